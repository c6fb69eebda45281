# Licensed to the Apache Software Foundation (ASF) under one
# or more contributor license agreements.  See the NOTICE file
# distributed with this work for additional information
# regarding copyright ownership.  The ASF licenses this file
# to you under the Apache License, Version 2.0 (the
# "License"); you may not use this file except in compliance
# with the License.  You may obtain a copy of the License at
#
#   http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing,
# software distributed under the License is distributed on an
# "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY
# KIND, either express or implied.  See the License for the
# specific language governing permissions and limitations
# under the License.
"""``python -m backend_ai_emulator``: serve the emulator until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import TYPE_CHECKING

from .server import is_loopback, start_emulator
from .settings import (
    DEFAULT_ACCESS_KEY,
    DEFAULT_SECRET_KEY,
    OTHER_ACCESS_KEY,
    OTHER_SECRET_KEY,
    EmulatorSettings,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType

DEFAULT_IMAGE = "cr.backend.ai/stable/python:3.9-ubuntu20.04"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend_ai_emulator", description="Local emulator of the Backend.AI manager REST API."
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback only unless forced)")
    parser.add_argument("--port", type=int, default=8091, help="port to bind (0 picks a free one)")
    parser.add_argument(
        "--allow-non-loopback", action="store_true", help="allow binding a non-loopback address"
    )
    parser.add_argument(
        "--realistic-timing", action="store_true", help="2 s scheduler steps and ticks like a manager"
    )
    parser.add_argument("--step-delay", type=float, help="seconds per scheduler step before RUNNING")
    parser.add_argument("--tick", type=float, help="scheduler tick between TERMINATING and TERMINATED")
    parser.add_argument("--access-key", default=DEFAULT_ACCESS_KEY)
    parser.add_argument("--secret-key", default=DEFAULT_SECRET_KEY)
    parser.add_argument("--other-access-key", default=OTHER_ACCESS_KEY)
    parser.add_argument("--other-secret-key", default=OTHER_SECRET_KEY)
    parser.add_argument("--image", action="append", default=[], help="add a known image (repeatable)")
    parser.add_argument("--accept-any-image", action="store_true", help="skip the image registry check")
    parser.add_argument(
        "--fixed-event-quirks", action="store_true", help="filter SSE by sessionId, fill exitCode"
    )
    parser.add_argument("--sse-ping-interval", type=float, help="seconds between ': ping' comments (15)")
    parser.add_argument(
        "--capacity",
        metavar="SLOTS",
        help="the agent's slots, e.g. cpu=8,mem=64g: sessions queue for them and can be preempted",
    )
    parser.add_argument("--long-cycle", type=float, help="seconds of the long-cycle scheduler pass (60 real)")
    parser.add_argument(
        "--block-event-streams",
        metavar="HOW",
        help="answer /events/session with an error status (404, 405, 502, ...), 'hang' or 'silent'",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.allow_non_loopback and not is_loopback(args.host):
        print(
            f"refusing to bind non-loopback host {args.host!r}; pass --allow-non-loopback to force",
            file=sys.stderr,
        )
        return 2
    settings = EmulatorSettings()
    if args.realistic_timing:
        settings.use_realistic_timing()
    if args.step_delay is not None:
        settings.step_delay = args.step_delay
    if args.tick is not None:
        settings.tick = args.tick
    settings.known_images.update(args.image)
    settings.accept_any_image = args.accept_any_image
    settings.fixed_event_quirks = args.fixed_event_quirks
    if args.sse_ping_interval is not None:
        settings.sse_ping_interval = args.sse_ping_interval
    if args.long_cycle is not None:
        settings.long_cycle = args.long_cycle
    if args.capacity:
        try:
            settings.capacity = dict(part.split("=", 1) for part in args.capacity.split(","))
        except ValueError:
            print(
                f"backend-ai-emulator: --capacity {args.capacity!r}: expected NAME=AMOUNT,...",
                file=sys.stderr,
            )
            return 2
    if args.block_event_streams:
        how = args.block_event_streams
        try:
            settings.event_stream_block = int(how) if how.isdigit() else how
        except ValueError as exc:
            print(f"backend-ai-emulator: {exc}", file=sys.stderr)
            return 2

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        handle = start_emulator(
            host=args.host,
            port=args.port,
            settings=settings,
            access_key=args.access_key,
            secret_key=args.secret_key,
            other_access_key=args.other_access_key,
            other_secret_key=args.other_secret_key,
            allow_non_loopback=args.allow_non_loopback,
        )
    except (OSError, RuntimeError) as exc:
        print(f"backend-ai-emulator: cannot start: {exc}", file=sys.stderr)
        return 1
    print(
        f"# backend-ai-emulator ({settings.manager_version}, API {settings.api_version})"
        f" serving {handle.endpoint} (server up in {handle.startup_seconds * 1000:.1f} ms)",
        f"export BACKEND_AI_TEST_ENDPOINT={handle.endpoint}",
        f"export BACKEND_AI_TEST_ACCESS_KEY={handle.access_key}",
        f"export BACKEND_AI_TEST_SECRET_KEY={handle.secret_key}",
        f"export BACKEND_AI_TEST_OTHER_ACCESS_KEY={handle.other_access_key}",
        f"export BACKEND_AI_TEST_OTHER_SECRET_KEY={handle.other_secret_key}",
        f"export BACKEND_AI_TEST_IMAGE={DEFAULT_IMAGE}",
        f"export BACKEND_AI_TEST_ADMIN_ACCESS_KEY={handle.admin_access_key}",
        f"export BACKEND_AI_TEST_ADMIN_SECRET_KEY={handle.admin_secret_key}",
        "# for the backend.ai CLI: BACKEND_ENDPOINT_TYPE=api BACKEND_ENDPOINT=... BACKEND_ACCESS_KEY=... "
        "BACKEND_SECRET_KEY=...",
        "# Ctrl-C or SIGTERM stops the server and kills running jobs.",
        sep="\n",
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            pass
    finally:
        handle.stop()
    print("# backend-ai-emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
