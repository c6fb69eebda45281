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
Rules on provider.yaml and on the files generated from it: get_provider_info.py and the package ``__init__``.

apache/airflow checks provider.yaml in ``run_provider_yaml_files_check.py`` and generates the other two
with breeze's templates when it releases a provider.
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

from provider_conformance.model import YAML_CHECK, Provider, Rules

RULES = Rules()
BREEZE = "dev/breeze/src/airflow_breeze"
MODULE_KINDS = ("hooks", "operators", "sensors", "triggers", "bundles")


def core_schema(name: str) -> dict[str, Any] | None:
    """A JSON schema shipped in the installed apache-airflow-core (found without importing Airflow)."""
    spec = importlib.util.find_spec("airflow")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / name
    return json.loads(path.read_text()) if path.is_file() else None


def no_core_schema(name: str) -> list[str]:
    return [f"apache-airflow-core's {name} not found: run with .venv-airflow3"]


def listed_modules(p: Provider, kind: str) -> list[str]:
    """The python-modules provider.yaml lists under ``kind`` (hooks, operators, ...)."""
    return [module for entry in p.yaml.get(kind, []) for module in entry.get("python-modules", [])]


def top_level_names(tree: ast.Module) -> set[str]:
    """Names a module defines at top level (classes, functions, assignments)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


@RULES.register(
    "provider-yaml-schema",
    f"{YAML_CHECK} + airflow-core/src/airflow/provider.yaml.schema.json@451092b8 (read from the installed core)",
)
def provider_yaml_schema(p: Provider) -> list[str]:
    """provider.yaml validates against the provider.yaml schema shipped with apache-airflow-core."""
    import jsonschema

    schema = core_schema("provider.yaml.schema.json")
    if schema is None:
        return no_core_schema("provider.yaml.schema.json")
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(p.yaml)
    ]


@RULES.register("provider-yaml-modules-exist", YAML_CHECK)
def provider_yaml_modules_exist(p: Provider) -> list[str]:
    """Every module listed under hooks/operators/sensors/triggers/bundles is in this package and exists."""
    problems = []
    for kind in MODULE_KINDS:
        for module in listed_modules(p, kind):
            if not module.startswith(p.package + "."):
                problems.append(f"{kind}: {module} is outside {p.package}")
            elif p.module_file(module) is None:
                problems.append(f"{kind}: {module} has no source file")
    return problems


@RULES.register("provider-yaml-modules-complete", YAML_CHECK)
def provider_yaml_modules_complete(p: Provider) -> list[str]:
    """The modules on disk under hooks/, operators/, sensors/, triggers/ are exactly those listed."""
    problems = []
    for kind in MODULE_KINDS:
        listed = set(listed_modules(p, kind))
        on_disk = {
            p.file_module(path)
            for path in p.src_files()
            if kind in path.relative_to(p.package_dir).parts[:-1] and path.name != "__init__.py"
        }
        problems += [f"{kind}: {m} exists but is not listed" for m in sorted(on_disk - listed)]
        problems += [f"{kind}: {m} is listed but does not exist" for m in sorted(listed - on_disk)]
    return problems


@RULES.register("provider-yaml-classes-exist", YAML_CHECK)
def provider_yaml_classes_exist(p: Provider) -> list[str]:
    """Class paths (connection hook classes, extra links, plugins, ...) are in this package and defined."""
    paths = [c["hook-class-name"] for c in p.yaml.get("connection-types", [])]
    paths += p.yaml.get("extra-links", []) + p.yaml.get("notifications", []) + p.yaml.get("executors", [])
    paths += p.yaml.get("queues", []) + [plugin["plugin-class"] for plugin in p.yaml.get("plugins", [])]
    problems = []
    for path in paths:
        module, _, name = path.rpartition(".")
        source = p.module_file(module)
        if not path.startswith(p.package + "."):
            problems.append(f"{path} is outside {p.package}")
        elif source is None or name not in top_level_names(p.tree(source)):
            problems.append(f"{path} is not defined")
    return problems


@RULES.register("provider-yaml-integrations", YAML_CHECK)
def provider_yaml_integrations(p: Provider) -> list[str]:
    """Integration names are unique, and every module group names a declared integration once."""
    declared = [i["integration-name"] for i in p.yaml.get("integrations", [])]
    problems = [f"integration {n!r} declared {c} times" for n, c in Counter(declared).items() if c > 1]
    for kind in MODULE_KINDS:
        names = [entry.get("integration-name", "") for entry in p.yaml.get(kind, [])]
        problems += [
            f"{kind}: integration {n!r} appears {c} times" for n, c in Counter(names).items() if c > 1
        ]
        problems += [f"{kind}: integration {n!r} is not declared" for n in names if n not in declared]
    return problems


@RULES.register("provider-yaml-how-to-guides", YAML_CHECK)
def provider_yaml_how_to_guides(p: Provider) -> list[str]:
    """The how-to guides listed in provider.yaml are exactly the docs under operators/ sensors/ transfer/."""
    prefix = f"/docs/{p.yaml['package-name']}/"
    listed = {g for i in p.yaml.get("integrations", []) for g in i.get("how-to-guide", [])}
    guides = []
    for kind in ("operators", "sensors", "transfer"):
        guides += list(p.files(p.docs / kind, "*.rst"))
        if (p.docs / f"{kind}.rst").is_file():
            guides.append(p.docs / f"{kind}.rst")
    on_disk = {prefix + g.relative_to(p.docs).as_posix() for g in guides if g.name != "index.rst"}
    problems = [f"{g} is not listed as a how-to-guide" for g in sorted(on_disk - listed)]
    problems += [f"how-to-guide {g} does not exist" for g in sorted(listed - on_disk)]
    logos = {i["logo"] for i in p.yaml.get("integrations", []) if "logo" in i}
    logo_files = {f"/docs/integration-logos/{f.name}" for f in p.files(p.docs / "integration-logos", "*")}
    problems += [f"logo {logo} does not exist" for logo in sorted(logos - logo_files)]
    problems += [f"logo {logo} is not listed" for logo in sorted(logo_files - logos)]
    return problems


@RULES.register(
    "get-provider-info-in-sync",
    f"{BREEZE}/utils/packages.py@0e5662cf + templates/get_provider_info_TEMPLATE.py.jinja2@4d845fbb",
)
def get_provider_info_in_sync(p: Provider) -> list[str]:
    """get_provider_info() returns provider.yaml restricted to the keys of the runtime schema."""
    schema = core_schema("provider_info.schema.json")
    source = p.package_dir / "get_provider_info.py"
    if schema is None:
        return no_core_schema("provider_info.schema.json")
    if not source.is_file():
        return [f"{p.rel(source)} is missing"]
    namespace: dict[str, Any] = {}
    exec(compile(source.read_text(), str(source), "exec"), namespace)
    expected = {key: value for key, value in p.yaml.items() if key in schema["properties"]}
    actual = namespace["get_provider_info"]()
    differing = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    return [f"{p.rel(source)} differs from provider.yaml in: {', '.join(differing)}"] if differing else []


@RULES.register("provider-init-version", f"{BREEZE}/templates/PROVIDER__INIT__PY_TEMPLATE.py.jinja2@aa7cb519")
def provider_init_version(p: Provider) -> list[str]:
    """The package __init__ carries __version__ == provider.yaml versions[0] and the minimum-Airflow guard."""
    init = p.package_dir / "__init__.py"
    if not init.is_file():
        return [f"{p.rel(init)} is missing"]
    version = None
    for node in p.tree(init).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            version = getattr(node.value, "value", None)
    problems = []
    if version != p.version:
        problems.append(f"__version__ is {version!r}, provider.yaml says {p.yaml['versions'][0]!r}")
    if "needs Apache Airflow" not in init.read_text():
        problems.append("no minimum-Airflow RuntimeError guard")
    return problems
