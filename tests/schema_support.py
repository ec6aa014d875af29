"""A small JSON Schema checker for the schemas in docs/schema/ (no jsonschema dependency).

It understands the part of JSON Schema those files use: ``type`` (one or a list),
``required``, ``properties``, ``additionalProperties`` (a schema), ``items``,
``enum``, ``oneOf`` and ``$ref`` to a sibling file. It is stricter than JSON
Schema in one way: an object whose schema lists ``properties`` and no
``additionalProperties`` may hold no other key, so every key the code writes is
documented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schema"

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def load_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text())
    return schema


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def problems(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Every way ``value`` breaks ``schema``, each with its JSON path; empty if none."""
    if "$ref" in schema:
        return problems(value, load_schema(schema["$ref"]), where)
    if "oneOf" in schema:
        matching = [s for s in schema["oneOf"] if not problems(value, s, where)]
        if len(matching) != 1:
            return [f"{where}: matches {len(matching)} of oneOf's schemas, not exactly one"]
        return []
    found: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        found.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return [*found, f"{where}: {value!r} is not of type {' or '.join(types)}"]
    if isinstance(value, dict):
        required = schema.get("required", ())
        found += [f"{where}: '{key}' is missing" for key in required if key not in value]
        properties: dict[str, Any] = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                found += problems(item, properties[key], f"{where}.{key}")
            elif isinstance(extra, dict):
                found += problems(item, extra, f"{where}.{key}")
            elif properties:
                found.append(f"{where}: '{key}' is not documented in the schema")
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += problems(item, schema["items"], f"{where}[{index}]")
    return found


def check(value: Any, schema_name: str) -> None:
    """Fail with every problem if ``value`` does not match ``docs/schema/<schema_name>``."""
    found = problems(value, load_schema(schema_name))
    assert not found, "\n".join(found)
