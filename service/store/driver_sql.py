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
        processors = {name: binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names}
        self.processors = {name: processor for name, processor in processors.items() if processor}

        # the parameters in the order the statement names them (for a multi-row INSERT's VALUES)
        self.order = self.names if self.positional else re.findall(r"%\((\w+)\)s", self.sql)

    def parameters(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        if self.processors:
            values = {**values, **{name: process(values[name]) for name, process in self.processors.items()}}
        if self.positional:
            return tuple([values[name] for name in self.names])
        return values

    def in_order(self, values: dict[str, Any]) -> list[Any]:
        if self.processors:
            values = {**values, **{name: process(values[name]) for name, process in self.processors.items()}}
        return [values[name] for name in self.order]
