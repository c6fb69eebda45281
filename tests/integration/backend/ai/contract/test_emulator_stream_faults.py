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
"""
The emulator's event-stream switches: drop every open stream, block streams, lose events, restart the
server, the ``: ping`` cadence, and the counts benchmarks read (open streams, requests per route).

Emulator only: these are the switches tests of an event-stream client flip on the live handle.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from backend_ai_emulator import EmulatorSettings, signed_headers

from .sdk import create_batch, open_session, query_session, wait_for_result

if TYPE_CHECKING:
    from backend_ai_emulator import EmulatorHandle

    from .sdk import ContractTarget

pytestmark = pytest.mark.emulator_only

STREAM_PATH = "/events/session?sessionName=%2A&scope=%2A"


def _stream_headers(target: ContractTarget, url: str) -> dict[str, str]:
    headers = signed_headers(
        "GET", url, target.access_key, target.secret_key, content_type="application/octet-stream"
    )
    del headers["Content-Type"]
    return headers


class RawStream:
    """A signed ``GET /events/session`` read frame by frame (what an event-stream client sees)."""

    def __init__(self, http: aiohttp.ClientSession, target: ContractTarget) -> None:
        self.http = http
        self.target = target
        self.url = f"{target.endpoint}{STREAM_PATH}"
        self.resp: aiohttp.ClientResponse | None = None

    async def open(self) -> aiohttp.ClientResponse:
        self.resp = await self.http.get(self.url, headers=_stream_headers(self.target, self.url))
        return self.resp

    async def frame(self, timeout: float = 5.0) -> bytes:
        """The next frame (up to its blank line); b"" at a clean end of the stream."""
        assert self.resp is not None
        try:
            return await asyncio.wait_for(self.resp.content.readuntil(b"\r\n\r\n"), timeout)
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    async def events(self, session_id: str, until: set[str], timeout: float = 15.0) -> list[str]:
        """Names of the events of ``session_id`` read until all of ``until`` came (pings skipped)."""
        names: list[str] = []
        missing = set(until)
        deadline = time.monotonic() + timeout
        while missing:
            frame = await self.frame(max(0.1, deadline - time.monotonic()))
            if not frame:
                raise AssertionError(f"the stream ended; saw {names}, still missing {sorted(missing)}")
            name, payload = parse_frame(frame)
            if name and payload.get("sessionId") == session_id:
                names.append(name)
                missing.discard(name)
        return names

    def close(self) -> None:
        if self.resp is not None:
            self.resp.close()


def parse_frame(frame: bytes) -> tuple[str | None, dict[str, Any]]:
    name, data = None, ""
    for line in frame.decode().split("\r\n"):
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data += line[len("data: ") :]
    return name, (json.loads(data) if data else {})


def _create(target: ContractTarget, command: str) -> str:
    with open_session(target.config()) as sdk:
        return str(create_batch(sdk, target, command).id)


async def _wait(emulator: EmulatorHandle, predicate: Any, timeout: float = 5.0) -> Any:
    return await asyncio.to_thread(emulator.wait_until, predicate, timeout)


# -- drop every open stream ------------------------------------------------------------------------


async def test_drop_cuts_every_open_stream_mid_stream_and_reconnects_work(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    async with aiohttp.ClientSession() as http:
        first, second = RawStream(http, contract_target), RawStream(http, contract_target)
        assert (await first.open()).status == 200
        assert (await second.open()).status == 200
        await _wait(emulator, lambda: emulator.open_event_streams == 2)

        assert await asyncio.to_thread(emulator.drop_event_streams) == 2
        # Cut mid-stream: no end of the chunked body, so aiohttp reports an incomplete payload.
        for stream in (first, second):
            with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
                await stream.frame()
        assert emulator.open_event_streams == 0

        # A client that reconnects gets a working stream and the events of a new job.
        again = RawStream(http, contract_target)
        assert (await again.open()).status == 200
        session_id = await asyncio.to_thread(_create, contract_target, "echo after-drop")
        names = await again.events(session_id, {"session_success", "session_terminated"})
        assert names.index("session_success") < names.index("session_terminated")
        again.close()
    assert emulator.event_streams_opened == 3
    assert emulator.event_streams_peak == 2


async def test_drop_without_abort_ends_the_response_cleanly(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        assert await asyncio.to_thread(emulator.drop_event_streams, abort=False) == 1
        assert await stream.frame() == b""  # EOF, not an error
        assert stream.resp is not None
        assert stream.resp.content.at_eof()


# -- block event streams ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "content_type", "marker"),
    [
        (404, "application/problem+json", "url-not-found"),
        (405, "application/problem+json", "method-not-allowed"),
        (502, "text/html", "502 Bad Gateway"),
        (504, "text/html", "504 Gateway Timeout"),
        (403, "text/html", "403 Forbidden"),
    ],
)
async def test_blocked_streams_answer_an_error_status(
    contract_target: ContractTarget, emulator: EmulatorHandle, how: int, content_type: str, marker: str
) -> None:
    async with aiohttp.ClientSession() as http:
        open_before = RawStream(http, contract_target)
        await open_before.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)

        await asyncio.to_thread(emulator.block_event_streams, how)
        # The open stream was cut (drop_open=True), and a reconnect meets the block.
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            await open_before.frame()
        blocked = RawStream(http, contract_target)
        resp = await blocked.open()
        body = await resp.text()
        assert resp.status == how
        assert resp.content_type == content_type
        assert marker in body
        blocked.close()
        assert emulator.open_event_streams == 0

        # Everything else is served as usual, and the block ends when lifted.
        session_id = await asyncio.to_thread(_create, contract_target, "echo polled")
        with open_session(contract_target.config()) as sdk:
            assert (await asyncio.to_thread(wait_for_result, sdk, contract_target, session_id))[
                "result"
            ] == "SUCCESS"
        emulator.unblock_event_streams()
        unblocked = RawStream(http, contract_target)
        assert (await unblocked.open()).status == 200
        unblocked.close()
    assert emulator.request_count(route="events") == 3


async def test_hang_block_never_answers(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    emulator.block_event_streams("hang")
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(stream.open(), 0.5)
    assert emulator.open_event_streams == 0
    assert emulator.request_count(route="events") == 1


async def test_silent_block_answers_200_and_then_nothing(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """A buffering proxy: the response starts, but neither events nor pings ever come through."""
    emulator.settings.sse_ping_interval = 0.05
    emulator.block_event_streams("silent")
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        resp = await stream.open()
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        session_id = await asyncio.to_thread(_create, contract_target, "echo unseen")
        await asyncio.to_thread(emulator.wait_for_session, session_id, status="TERMINATED")
        with pytest.raises(TimeoutError):
            await stream.frame(timeout=0.5)
        stream.close()


def test_block_rejects_unknown_modes(emulator: EmulatorHandle) -> None:
    for bad in (200, 302, "closed", True, 404.0):
        with pytest.raises(ValueError, match="event_stream_block"):
            emulator.settings.event_stream_block = bad
    assert emulator.settings.event_stream_block is None


# -- lose events -----------------------------------------------------------------------------------


async def test_lose_the_next_job_end_event(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    loss = emulator.faults.lose_events(1, names={"session_success", "session_failure"})
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        lost = await asyncio.to_thread(_create, contract_target, "echo first")
        names = await stream.events(lost, {"session_terminated"})
        assert "session_success" not in names
        assert "session_terminating" in names
        # Only the next one was lost: the second job's success event comes through.
        kept = await asyncio.to_thread(_create, contract_target, "exit 3")
        assert "session_failure" in await stream.events(kept, {"session_failure"})
        stream.close()
    assert loss.dropped == 1
    assert loss.exhausted
    snap = emulator.get_session(lost)
    assert snap is not None
    assert snap.result == "SUCCESS"  # the server state is unaffected: a poll sees the result
    (success,) = [e for e in snap.events if e.name == "session_success"]
    assert not success.delivered
    assert all(e.delivered for e in snap.events if e.name != "session_success")


async def test_lose_every_event_of_one_session(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        with open_session(contract_target.config()) as sdk:
            silent = create_batch(sdk, contract_target, "sleep 0.5; echo silent")
            loss = emulator.faults.lose_events(session_id=silent.id)
            loud = create_batch(sdk, contract_target, "sleep 0.5; echo loud")
        names_seen: dict[str, list[str]] = {str(silent.id): [], str(loud.id): []}
        deadline = time.monotonic() + 15
        while "session_terminated" not in names_seen[str(loud.id)] and time.monotonic() < deadline:
            name, payload = parse_frame(await stream.frame())
            if name and payload.get("sessionId") in names_seen:
                names_seen[payload["sessionId"]].append(name)
        stream.close()
        await asyncio.to_thread(emulator.wait_for_session, silent.id, status="TERMINATED")
    assert "session_success" in names_seen[str(loud.id)]
    # Events emitted before the loss was registered (the create's session_pending) may have come through.
    assert set(names_seen[str(silent.id)]) <= {"session_pending"}
    assert loss.times is None
    assert loss.dropped >= 6
    assert loss in emulator.faults.event_losses  # unlimited: never exhausted
    emulator.faults.remove(loss)
    assert loss not in emulator.faults.event_losses


def test_lose_next_n_events_of_any_kind(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    loss = emulator.faults.lose_events(2)
    session_id = _create(contract_target, "echo x")
    snap = emulator.wait_for_session(session_id, status="TERMINATED")
    session_events = [e for e in snap.events if not e.is_kernel_event]
    assert [e.delivered for e in session_events[:3]] == [False, False, True]
    assert all(e.delivered for e in snap.events if e.is_kernel_event)  # kernel events only with kernel=True
    assert loss.dropped == 2
    with pytest.raises(ValueError, match="times"):
        emulator.faults.lose_events(-1)


# -- restart ---------------------------------------------------------------------------------------


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


async def test_restart_closes_everything_refuses_and_comes_back_with_the_same_sessions(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    port = emulator.port
    emulator.settings.tick = 0.5  # TERMINATED 1 s after the result: late enough for a reconnected stream
    session_id = await asyncio.to_thread(_create, contract_target, "sleep 1; echo survived")
    await asyncio.to_thread(emulator.wait_for_session, session_id, status="RUNNING")
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)

        began = time.monotonic()
        await asyncio.to_thread(emulator.restart, 1.5)
        assert not emulator.is_up
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            await stream.frame()
        assert _refused(port)
        # The job ends while the server is down; its end is handled when the server is back.
        await asyncio.to_thread(
            emulator.wait_until, lambda: (s := emulator.get_session(session_id)) and s.job_exited_at, 5
        )
        snap = emulator.get_session(session_id)
        assert snap is not None
        assert snap.result == "UNDEFINED"
        assert snap.status == "RUNNING"

        again = RawStream(http, contract_target)
        reconnect_deadline = time.monotonic() + 10
        while True:  # a client's reconnect loop
            try:
                resp = await again.open()
                break
            except aiohttp.ClientConnectorError:
                assert time.monotonic() < reconnect_deadline
                await asyncio.sleep(0.1)
        assert resp.status == 200
        assert time.monotonic() - began >= 1.4
        assert emulator.is_up
        assert emulator.port == port
        # The backlog is handled the moment the server is back, maybe before this stream was open (no
        # replay): session_success may be missed, session_terminated comes two ticks later.
        names = await again.events(session_id, {"session_terminated"})
        assert "session_started" not in names
        again.close()
    with open_session(contract_target.config()) as sdk:
        row = query_session(sdk, session_id)
    assert row is not None
    assert (row["status"], row["result"]) == ("TERMINATED", "SUCCESS")
    snap = emulator.get_session(session_id)
    assert snap is not None
    assert snap.logs == "survived\n"
    success_at = snap.event_time("session_success")
    assert success_at is not None
    assert snap.job_exited_at is not None
    assert (success_at - snap.job_exited_at).total_seconds() > 0.3  # held until the server was back
    assert emulator.restarts == 1


async def test_restart_without_holding_the_lifecycle(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    session_id = await asyncio.to_thread(_create, contract_target, "sleep 0.3; echo on-time")
    await asyncio.to_thread(emulator.wait_for_session, session_id, status="RUNNING")
    await asyncio.to_thread(emulator.restart, 1.5, hold_lifecycle=False)
    snap = await asyncio.to_thread(emulator.wait_for_session, session_id, result="SUCCESS", timeout=5)
    assert not emulator.is_up  # the result came while the server was still down
    await asyncio.to_thread(emulator.wait_until_up, 5)
    assert snap.job_exited_at is not None
    success_at = snap.event_time("session_success")
    assert success_at is not None
    assert (success_at - snap.job_exited_at).total_seconds() < 0.3


def test_reset_ends_a_restart_early(emulator: EmulatorHandle) -> None:
    emulator.restart(60)
    assert not emulator.is_up
    with pytest.raises(RuntimeError, match="already down"):
        emulator.restart(1)
    emulator.reset()
    assert emulator.is_up
    assert not _refused(emulator.port)


# -- pings and counts ------------------------------------------------------------------------------


async def test_pings_keep_their_cadence_between_events(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """aiohttp-sse pings on a timer of its own: events in between do not postpone the next ping."""
    emulator.settings.sse_ping_interval = 0.3
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        # A job whose events keep coming at least every 0.1 s for a while.
        emulator.settings.step_delay = 0.1
        emulator.settings.tick = 0.1
        await asyncio.to_thread(_create, contract_target, "sleep 0.5")
        pings: list[float] = []
        deadline = time.monotonic() + 1.6
        while time.monotonic() < deadline:
            try:
                frame = await stream.frame(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            if frame == b": ping\r\n\r\n":
                pings.append(time.monotonic())
        stream.close()
    assert len(pings) >= 4, pings
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.55, gaps


def test_request_counts_per_route(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    before = time.time()
    with open_session(contract_target.config()) as sdk:
        created = create_batch(sdk, contract_target, "echo counted")
        wait_for_result(sdk, contract_target, created.id)
        created.get_logs()
    counts = emulator.request_counts()
    assert counts["create"] == 1
    assert counts["logs"] == 1
    assert counts["gql"] >= 1
    assert counts["root"] >= 1
    assert sum(counts.values()) == len(emulator.requests)
    assert emulator.request_counts(since=time.time() + 60) == {}
    assert emulator.request_counts(since=before) == counts


def test_job_exit_time_is_recorded_before_the_result(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    session_id = _create(contract_target, "sleep 0.2; exit 1")
    snap = emulator.wait_for_session(session_id, status="TERMINATED")
    assert snap.job_exited_at is not None
    failure_at = snap.event_time("session_failure")
    assert failure_at is not None
    running_at = snap.status_time("RUNNING")
    assert running_at is not None
    assert running_at < snap.job_exited_at <= failure_at
    assert (failure_at - snap.job_exited_at).total_seconds() < 0.5


async def test_result_write_delay_sends_the_end_event_before_the_result(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """
    ``result_write_delay``: the end event reaches the stream before ``result`` is written (a loaded manager),
    and ``session_terminating`` comes only once it is.
    """
    emulator.settings.result_write_delay = 0.5
    async with aiohttp.ClientSession() as http:
        stream = RawStream(http, contract_target)
        await stream.open()
        await _wait(emulator, lambda: emulator.open_event_streams == 1)
        session_id = await asyncio.to_thread(_create, contract_target, "echo early-event")
        await stream.events(session_id, {"session_success"})
        snap = emulator.get_session(session_id)
        assert snap is not None
        assert (snap.status, snap.result) == ("RUNNING", "UNDEFINED")
        with open_session(contract_target.config()) as sdk:
            row = query_session(sdk, session_id)
        assert row is not None
        assert (row["status"], row["result"]) == ("RUNNING", "UNDEFINED")
        await stream.events(session_id, {"session_terminating"})
        snap = emulator.get_session(session_id)
        assert snap is not None
        assert snap.result == "SUCCESS"
        stream.close()
    final = await asyncio.to_thread(emulator.wait_for_session, session_id, status="TERMINATED")
    success_at, result_at = final.event_time("session_success"), final.status_time("TERMINATING")
    assert success_at is not None
    assert result_at is not None
    assert 0.4 < (result_at - success_at).total_seconds() < 1.5


def test_logs_gap_while_terminating(contract_target: ContractTarget, emulator: EmulatorHandle) -> None:
    """Between ``kernel_terminated`` and TERMINATED the manager cannot read a log (HTTP 500); before and after, it can."""
    from ai.backend.client.exceptions import BackendAPIError

    from .sdk import session_ref

    emulator.settings.logs_gap_while_terminating = True
    emulator.settings.tick = 0.6
    with open_session(contract_target.config()) as sdk:
        created = create_batch(sdk, contract_target, "echo gap")
        emulator.wait_for_session(created.id, result="SUCCESS")
        ref = session_ref(created.id)
        assert ref.get_logs()["result"]["logs"] == "gap\n"  # at once: the kernel is still there
        emulator.wait_for_session(created.id, predicate=lambda s: "kernel_terminated" in s.event_names)
        with pytest.raises(BackendAPIError) as err:
            ref.get_logs()
        assert err.value.status == 500
        emulator.wait_for_session(created.id, status="TERMINATED")
        assert ref.get_logs()["result"]["logs"] == "gap\n"


def test_a_result_written_late_comes_inside_the_log_gap(
    contract_target: ContractTarget, emulator: EmulatorHandle
) -> None:
    """The agent drops the kernel a tick after the job's end: a result written later meets the HTTP 500 gap."""
    from ai.backend.client.exceptions import BackendAPIError

    from .sdk import session_ref

    emulator.settings.logs_gap_while_terminating = True
    emulator.settings.tick = 0.5
    emulator.settings.result_write_delay = 0.8
    with open_session(contract_target.config()) as sdk:
        created = create_batch(sdk, contract_target, "echo late")
        emulator.wait_for_session(created.id, result="SUCCESS")
        ref = session_ref(created.id)
        with pytest.raises(BackendAPIError) as err:
            ref.get_logs()
        assert err.value.status == 500
        emulator.wait_for_session(created.id, status="TERMINATED")
        assert ref.get_logs()["result"]["logs"] == "late\n"


def test_realistic_timing_turns_the_log_gap_on() -> None:
    settings = EmulatorSettings()
    assert not settings.logs_gap_while_terminating
    settings.use_realistic_timing()
    assert settings.logs_gap_while_terminating
    assert settings.tick == 2.0
