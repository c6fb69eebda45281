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
Rules on operator and sensor classes: their ``deferrable`` default and how ``__init__`` treats template fields.

Template fields are rendered after ``__init__``, just before ``execute``: ``__init__`` must store each one
unchanged under its own name (``self.x = x``) and must not compute with it, or the rendered value is lost.
Upstream checks this with ``validate_operators_init.py`` and ``run_template_fields_check.py``.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from provider_conformance.model import PREK, Provider, Rules, classes, name_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RULES = Rules()
INIT_CHECK = f"{PREK}/validate_operators_init.py@03b94ce8"
DEFERRABLE_DEFAULT = "conf.getboolean('operators', 'default_deferrable', fallback=False)"


# -- Reading a class ---------------------------------------------------------------------------------------


def base_names(cls: ast.ClassDef) -> list[str]:
    """The names of a class's direct bases (``BaseOperator`` for ``sdk.BaseOperator`` or ``Base[T]``)."""
    bases = (base.value if isinstance(base, ast.Subscript) else base for base in cls.bases)
    return [name for base in bases if (name := name_of(base))]


def is_operator_class(cls: ast.ClassDef) -> bool:
    """The upstream heuristic: a direct base whose name ends in BaseOperator or BaseSensorOperator."""
    return any(name.endswith(("BaseOperator", "BaseSensorOperator")) for name in base_names(cls))


def template_fields(cls: ast.ClassDef) -> list[str]:
    """The names in the class's own ``template_fields = (...)`` tuple."""
    target: ast.expr
    value: ast.expr | None
    for node in cls.body:
        if isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id == "template_fields" and isinstance(value, ast.Tuple):
            return [
                elt.value
                for elt in value.elts
                if isinstance(elt, ast.Constant) and isinstance(elt.value, str)
            ]
    return []


def constructor(cls: ast.ClassDef) -> ast.FunctionDef | None:
    return next((n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)


def self_attribute(node: ast.AST) -> str | None:
    """``x`` for ``self.x``, else None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return node.attr
    return None


def class_chain(cls: ast.ClassDef, by_name: dict[str, ast.ClassDef]) -> Iterator[ast.ClassDef]:
    """The class and its bases defined in the same module (bases from elsewhere are not followed)."""
    yield cls
    for base in base_names(cls):
        if base in by_name:
            yield from class_chain(by_name[base], by_name)


def operator_classes(p: Provider) -> Iterator[tuple[Path, ast.ClassDef]]:
    """(file, class) of each operator or sensor class in operators/, sensors/ and transfers/."""
    for source in p.sources_in({"operators", "sensors", "transfers"}):
        for cls in classes(p.tree(source)):
            if is_operator_class(cls):
                yield source, cls


def template_fields_and_init(p: Provider) -> Iterator[tuple[Path, ast.ClassDef, list[str], ast.FunctionDef]]:
    """(file, class, its template fields, its __init__) of each operator class that has both."""
    for source, cls in operator_classes(p):
        fields, init = template_fields(cls), constructor(cls)
        if fields and init is not None:
            yield source, cls, fields, init


# -- The rules ---------------------------------------------------------------------------------------------


@RULES.register("deferrable-default", f"{PREK}/check_deferrable_default.py@1ac4aff4")
def deferrable_default(p: Provider) -> list[str]:
    """A ``deferrable`` argument of an operator or sensor defaults to [operators] default_deferrable."""
    problems = []
    for source, node in p.nodes(p.sources_in({"operators", "sensors"})):
        if not (isinstance(node, ast.FunctionDef) and node.name == "__init__"):
            continue
        args = node.args
        positional = args.posonlyargs + args.args
        defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
        for arg, default in [
            *zip(positional, defaults, strict=True),
            *zip(args.kwonlyargs, args.kw_defaults, strict=True),
        ]:
            if arg.arg == "deferrable" and (default is None or ast.unparse(default) != DEFERRABLE_DEFAULT):
                problems.append(
                    f"{p.rel(source)}:{arg.lineno} deferrable default is not {DEFERRABLE_DEFAULT}"
                )
    return problems


@RULES.register("operators-init-assignments", INIT_CHECK)
def operators_init_assignments(p: Provider) -> list[str]:
    """Each template field is assigned in __init__ as ``self.x = x`` (or passed on as ``super().__init__(x=x)``)."""
    problems = []
    for source, cls, fields, init in template_fields_and_init(p):
        assigned: set[str] = set()
        invalid: set[str] = set()
        for node in ast.walk(init):
            pairs: list[tuple[str | None, ast.AST | None]] = []
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = [(self_attribute(t), node.value) for t in targets]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "__init__":
                pairs = [(k.arg, k.value) for k in node.keywords if k.arg]
            for field, value in pairs:
                if field in fields:
                    if isinstance(value, ast.BoolOp) and isinstance(value.op, ast.Or):
                        value = value.values[0]  # ``self.x = x or default`` is allowed
                    same_name = isinstance(value, ast.Name) and value.id == field
                    (assigned if same_name else invalid).add(field)
        where = f"{p.rel(source)} {cls.name}"
        problems += [
            f"{where}: self.{f} is assigned from something other than '{f}'" for f in sorted(invalid)
        ]
        problems += [
            f"{where}: template field {f} is never assigned in __init__"
            for f in fields
            if f not in assigned | invalid
        ]
    return problems


def storing_places(init: ast.FunctionDef) -> set[int]:
    """
    ids of the expressions where __init__ may name a template field without computing with it.

    Those are an assigned value (or the first operand of ``value or default``), a keyword argument passed
    on, and the left side of a comparison with None.
    """
    places: set[int] = set()
    for node in ast.walk(init):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            value = node.value.values[0] if isinstance(node.value, ast.BoolOp) else node.value
            places.add(id(value))
        elif isinstance(node, ast.keyword):
            places.add(id(node.value))
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.comparators[0], ast.Constant)
            and node.comparators[0].value is None
        ):
            places.add(id(node.left))
    return places


@RULES.register("operators-init-no-template-logic", INIT_CHECK)
def operators_init_no_template_logic(p: Provider) -> list[str]:
    """__init__ does not read template fields beyond assigning them: they are rendered only after __init__."""
    problems = []
    for source, cls, fields, init in template_fields_and_init(p):
        parameters = {a.arg for a in [*init.args.args, *init.args.kwonlyargs]}
        defaults = {id(n) for d in [*init.args.defaults, *init.args.kw_defaults] if d for n in ast.walk(d)}
        exempt = storing_places(init) | defaults
        for node in ast.walk(init):
            if not isinstance(node, (ast.Name, ast.Attribute)) or not isinstance(node.ctx, ast.Load):
                continue
            name = node.id if isinstance(node, ast.Name) and node.id in parameters else self_attribute(node)
            if name in fields and id(node) not in exempt:
                problems.append(
                    f"{p.rel(source)}:{node.lineno} {cls.name}.__init__ reads template field {name}"
                )
    return problems


@RULES.register(
    "template-fields-are-attributes", "scripts/in_container/run_template_fields_check.py@0e5662cf"
)
def template_fields_are_attributes(p: Provider) -> list[str]:
    """Every template field of an operator/sensor is an instance attribute set in an __init__ of its class chain."""
    problems = []
    for source in p.sources_in({"operators", "sensors"}):
        by_name = {cls.name: cls for cls in classes(p.tree(source))}
        for cls in by_name.values():
            if not cls.name.endswith(("Operator", "Sensor")):
                continue
            fields = {f for c in class_chain(cls, by_name) for f in template_fields(c)}
            attributes = {
                self_attribute(t)
                for c in class_chain(cls, by_name)
                if (init := constructor(c)) is not None
                for node in ast.walk(init)
                if isinstance(node, (ast.Assign, ast.AnnAssign))
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            }
            problems += [
                f"{p.rel(source)} {cls.name}: template field {f} is never set"
                for f in sorted(fields - attributes)
            ]
    return problems
