"""How a key is named where people read it (queue assignees, determinations' reviewers).

Keys carry a label (``keys create --label``) and may carry a name (``--name``, a reviewer's
display name), which wins over the label, here and only here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func

from service.store.tables import ApiKey


def display_name(key: Any) -> str | None:
    """A key's (or key row's) name for people: its ``name`` when it has one, else its label."""
    return getattr(key, "name", None) or getattr(key, "label", None)


def name_column() -> Any:
    """The SQL expression of a key row's name for people (the rule of :func:`display_name`)."""
    return func.coalesce(ApiKey.name, ApiKey.label)


def person(key_id: str | None, name: str | None) -> dict[str, Any] | None:
    """``{"key_id", "name"}``, or None without a key."""
    return None if key_id is None else {"key_id": key_id, "name": name}
