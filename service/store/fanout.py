"""A whole batch of the group commit in one SQLite statement, when every item of the batch holds
the same rows (a stored evaluation: its request's row, its own, its audit record).

The writer thread takes the GIL back after every call into SQLite, and each time it waits for
the busy event loop to let go of it: a batch written as BEGIN, an INSERT a table and COMMIT made
it wait five times, which held commits (and so the answers waiting on them) back. Here the batch
is one multi-row INSERT into a temporary view whose ``INSTEAD OF`` trigger writes each of its
rows into the real tables, parents first: a single statement, so a transaction of its own (all
rows or none, durable when it returns), and one wait for the GIL. Measured with the key check
kept in memory (store/key_changes.py): +10-27 % stored evaluations/s (bench/RESULTS-http.md).

The view and its trigger are ``TEMP`` objects of the writer's own connection, which nothing else
uses (not the pool, so never a migration: SQLite checks a connection's triggers when a table is
renamed), made the first time that connection meets the batch's shape. The trigger's statements
are the compiled INSERT of each table (an upsert keeps its ``ON CONFLICT`` clause) with the
view's columns in place of parameters; the values are those the driver would have been given,
bind processing included.
"""

from __future__ import annotations

import threading
from itertools import count
from typing import Any

from service.store.driver_sql import DriverSql


class Fanout:
    """The view and trigger that write one row of each of ``targets`` per row inserted."""

    def __init__(self, name: str, targets: list[DriverSql]) -> None:
        self.name = name
        self.widths = [len(target.order) for target in targets]
        columns = [f"c{number}" for number in range(sum(self.widths))]
        statements, start = [], 0
        for target, width in zip(targets, self.widths, strict=True):
            statements.append(_with_columns(target, columns[start:start + width]))
            start += width
        self.ddl = (
            f"CREATE TEMP VIEW {name} AS SELECT {', '.join(f'NULL AS {column}' for column in columns)}",
            f"CREATE TEMP TRIGGER {name}_rows INSTEAD OF INSERT ON {name} BEGIN {' '.join(statements)} END",
        )
        self._row = "(" + ", ".join(["?"] * len(columns)) + ")"

    def insert(self, rows: int) -> str:
        return f"INSERT INTO {self.name} VALUES {', '.join([self._row] * rows)}"

    def parameters(self, by_target: list[list[Any]], rows: int) -> list[Any]:
        """The view's values, row after row, from each target's (laid out row after row, as
        :meth:`DriverSql.in_order` gives them)."""
        values: list[Any] = []
        extend = values.extend
        for row in range(rows):
            for flat, width in zip(by_target, self.widths, strict=True):
                extend(flat[row * width:(row + 1) * width])
        return values


class Fanouts:
    """The fan-out of each shape met (a shape: the compiled inserts of a batch, parents first)."""

    def __init__(self) -> None:
        self._made: dict[tuple[DriverSql, ...], Fanout | None] = {}
        self._names = count(1)
        self._lock = threading.Lock()

    def of(self, targets: list[DriverSql]) -> Fanout | None:
        """None for a shape one statement cannot write (an INSERT binding more than its row's
        values): its batches go a statement a table."""
        shape = tuple(targets)
        with self._lock:
            if shape not in self._made:
                try:
                    self._made[shape] = Fanout(f"fanout_{next(self._names)}", targets)
                except ValueError:
                    self._made[shape] = None
            return self._made[shape]


def _with_columns(target: DriverSql, columns: list[str]) -> str:
    """A compiled single-row INSERT (``... VALUES (?, ...)``, perhaps ``ON CONFLICT ...``)
    writing the trigger's ``NEW`` columns instead of parameters."""
    if target.insert_values != f"({', '.join(['?'] * len(columns))})" or "?" in target.insert_head + target.insert_tail:
        raise ValueError(f"not an INSERT of one row of {len(columns)} plain values: {target.insert_head}")
    return target.with_values(f"({', '.join(f'NEW.{column}' for column in columns)})") + ";"
