"""JSON as the service writes it (results, stored cases): orjson, ~3 times faster than
pydantic-core and ~10 times faster than ``json.dumps`` on a ~20 kB result, and the same bytes as
``json.dumps(data, separators=(",", ":"), ensure_ascii=False)`` (``indent=2`` when indented)."""

from __future__ import annotations

import json
from typing import Any

import orjson


def json_bytes(data: Any, indent: bool = False) -> bytes:
    try:
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 if indent else 0)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which Python's JSON reads and writes
        if indent:
            return json.dumps(data, indent=2, ensure_ascii=False).encode()
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
