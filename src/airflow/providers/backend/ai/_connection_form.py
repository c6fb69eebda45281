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
The ``backend_ai`` connection form for Airflow before 3.2, built from ``provider.yaml``'s declarative form.

Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info without importing the
hook; older versions call the hook's classmethods, which return what these functions build from the same
declaration, so the two forms cannot drift apart.
"""

from __future__ import annotations

from typing import Any


def ui_field_behaviour() -> dict[str, Any]:
    """Form layout for Airflow < 3.2: ``ui-field-behaviour`` with the snake_case keys its form expects."""
    behaviour = _connection_type_info()["ui-field-behaviour"]
    return {key.replace("-", "_"): value for key, value in behaviour.items()}


def form_widgets() -> dict[str, Any]:
    """Extra form fields for Airflow < 3.2: one WTForms field per ``conn-fields`` entry (text or boolean)."""
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, StringField

    widgets: dict[str, Any] = {}
    for name, spec in _connection_type_info()["conn-fields"].items():
        label, schema = lazy_gettext(spec["label"]), spec["schema"]
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        common = {"default": schema.get("default"), "description": spec.get("description", "")}
        if "boolean" in types:
            widgets[name] = BooleanField(label, **common)
        else:  # numbers too: the hook parses the text
            widgets[name] = StringField(label, widget=BS3TextFieldWidget(), **common)
    return widgets


def _connection_type_info() -> dict[str, Any]:
    from airflow.providers.backend.ai.get_provider_info import get_provider_info

    (info,) = (
        item for item in get_provider_info()["connection-types"] if item["connection-type"] == "backend_ai"
    )
    return info
