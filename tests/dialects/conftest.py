"""Shared by the dialect tests: JSON Schema validation of every dialect response."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).parent / "schemas"


def validate(schema: str, body: Any) -> Any:
    """Validate ``body`` against ``schemas/<schema>.json`` (draft 2020-12); returns it."""
    document = json.loads((SCHEMAS / f"{schema}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    jsonschema.Draft202012Validator(
        document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(body)
    return body
