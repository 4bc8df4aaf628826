"""Statements run on the driver directly (service.store.database's hot path): each compiled once
for a dialect, with how to lay out its parameters for the driver."""

from __future__ import annotations

import re
from typing import Any


class DriverSql:
    """A statement compiled once for a dialect, with how to lay out its parameters for the driver
    (SQLAlchemy's bind processing included, e.g. timestamps as SQLite stores them)."""

    def __init__(self, statement: Any, dialect: Any, columns: tuple[str, ...] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(columns) if columns else None)
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        binds = compiled.binds
        # Columns whose type processes a whole batch's values at once (``process_bind_many``:
        # compressing them with one release of the GIL, service.store.compressed) and the others'
        # value by value.
        self.batch_processors = {name: binds[name].type.process_bind_many for name in self.names
                                 if hasattr(binds[name].type, "process_bind_many")}
        processors = {name: binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
                      if name not in self.batch_processors}
        self.processors = {name: processor for name, processor in processors.items() if processor}

        # the parameters in the order the statement names them (for a multi-row INSERT's VALUES)
        self.order = self.names if self.positional else re.findall(r"%\((\w+)\)s", self.sql)
        # An INSERT's text around its VALUES clause (an upsert's ON CONFLICT clause binds only
        # constants), to write it with other VALUES: many rows (service.store.database), a
        # trigger's columns (service.store.fanout).
        self.insert_head, _, rest = self.sql.partition(" VALUES ")
        end = rest.find(") ON CONFLICT")
        self.insert_values, self.insert_tail = (rest[:end + 1], rest[end + 1:]) if end >= 0 else (rest, "")

    def with_values(self, values: str) -> str:
        """This INSERT with ``values`` as its VALUES clause."""
        return f"{self.insert_head} VALUES {values}{self.insert_tail}"

    def parameters(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        values = self._processed([values])[0]
        if self.positional:
            return tuple([values[name] for name in self.names])
        return values

    def in_order(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Every row's parameters, one row after another, in the order the statement names them
        (for a multi-row INSERT's VALUES)."""
        order = self.order
        return [row[name] for row in self._processed(rows) for name in order]

    def _processed(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.processors and not self.batch_processors:
            return rows
        rows = [{**row, **{name: process(row[name]) for name, process in self.processors.items()}} for row in rows]
        for name, process_many in self.batch_processors.items():
            for row, value in zip(rows, process_many([row[name] for row in rows]), strict=True):
                row[name] = value
        return rows
