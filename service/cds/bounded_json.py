"""JSON from outside (an EHR's FHIR answers, a hook's body) read within bounds: a nesting depth
checked right after parsing, so that no deeply nested document reaches code that recurses
(copying, validating, serialising), where it would end as a RecursionError and a 500.

orjson parses (in C, refusing by itself what nests beyond 1,024 levels); the depth is then
measured without recursion. FHIR resources nest shallowly (a DTR QuestionnaireResponse with
nested groups reaches about 20 levels); :data:`MAX_DEPTH` leaves room for three times that.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 64


class Unreadable(ValueError):
    """Not JSON, or nested deeper than allowed (the message says which, never the content)."""


def too_deep(document: Any, max_depth: int = MAX_DEPTH) -> bool:
    """True when arrays and objects nest more than ``max_depth`` levels in ``document``."""
    if not isinstance(document, (dict, list)):
        return False
    stack = [(document, 1)]
    while stack:
        node, level = stack.pop()
        if level > max_depth:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, (dict, list)):
                stack.append((child, level + 1))
    return False


def loads(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document; Unreadable when it is not JSON or nests deeper than ``max_depth``."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise Unreadable("not valid JSON (or nested beyond 1,024 levels)") from None
    if too_deep(document, max_depth):
        raise Unreadable(f"nested more than {max_depth} levels deep")
    return document
