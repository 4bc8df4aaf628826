"""Group commit: one writer thread commits every item waiting at that moment in one transaction,
so one fsync serves many, and each caller learns that its own rows are durable only once that
commit has returned.

An item is every row one request must have stored before it answers, of any tables, each with
its table or with an INSERT statement of its own (an upsert: ``store/requests.request_upsert``):
``[(target, row), ...]``, parents first. Whatever a request writes joins its item, so that it
costs no commit of its own: its request row, the evaluation's row, its Idempotency-Key record,
an audit record::

    rows = [request_row(...), evaluation_row(...), claim.row(evaluation_id, created_at), audit_row(...)]
    await db.writer.commit_async(rows)   # returns once all of them are committed; raises if not

(a read that only writes its audit record commits an item of one row). The writer inserts a
batch a statement per target and set of columns (rows of one table may leave out different
columns), parents first: in the order each item gives, and after every table a row's foreign
keys refer to, so a row may refer to a parent row of any item of the batch. An item's rows are
stored together or not at all: when a batch fails on one item (a duplicate key, an
Idempotency-Key recorded meanwhile), each item is committed again alone, and only that one
fails, with the database's error (IntegrityError). Rows of a table written by other means too
(a unique key a request may race for) fail their item that way, never the batch.
"""

from __future__ import annotations

import asyncio
import graphlib
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Evaluations one transaction commits at most; more wait for the next (bounds a commit's size).
GROUP_COMMIT_MAX = 256

# Rows to write in one transaction, parents first: (table, column values) for a plain insert, or
# (an INSERT statement made once, such as an upsert, column values) for rows written with it.
Target = Table | Insert
Rows = Sequence[tuple[Target, dict[str, Any]]]


class GroupCommit:
    """One writer thread that commits whatever rows are waiting, together.

    ``commit(rows)`` (blocking) and ``await commit_async(rows)`` queue one evaluation's rows (with
    any rows that must be committed with it, parents first) and return once a commit holding them
    has returned, or raise that commit's error. The writer takes every item waiting (up to
    ``GROUP_COMMIT_MAX``) into one transaction: under load one fsync serves a whole batch, and an
    item never waits for more than the commit in progress. Should a batch fail on one item's rows
    (a duplicate key, say), each item is retried in a transaction of its own so that only that one
    fails; when the database is unavailable, every item of the batch fails with that error.
    Waiters on an event loop are woken with one call per batch, not one per item.
    """

    def __init__(self, insert: Callable[[dict[tuple[Target, tuple[str, ...]], list[dict[str, Any]]], bool], None]) -> None:
        self._insert_rows = insert
        self._lock = threading.Lock()
        self._writer: tuple[threading.Thread, queue.SimpleQueue] | None = None

    def submit(self, rows: Rows) -> Future:
        """Queue ``rows``; the future completes once they are committed (or fails as the commit did)."""
        future: Future = Future()
        self._put((rows, future))
        return future

    def commit(self, rows: Rows) -> None:
        """When this returns, ``rows`` are committed."""
        self.submit(rows).result()

    async def commit_async(self, rows: Rows) -> None:
        """Like :meth:`commit`, waiting without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._put((rows, (loop, future)))
        await future

    def close(self) -> None:
        """Commit what is queued, then stop the writer (a later commit starts a new one)."""
        with self._lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            thread, waiting = writer
            waiting.put(None)
            thread.join()

    def _put(self, item: tuple[Rows, Any]) -> None:
        with self._lock:  # started on first use: a process that forks workers never starts one
            if self._writer is None:
                waiting: queue.SimpleQueue = queue.SimpleQueue()
                thread = threading.Thread(target=self._run, args=(waiting,), name="group-commit", daemon=True)
                thread.start()
                self._writer = thread, waiting
            self._writer[1].put(item)

    def _run(self, waiting: queue.SimpleQueue) -> None:
        stopping = False
        while not stopping:
            item = waiting.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < GROUP_COMMIT_MAX:
                try:
                    item = waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            outcomes: list[BaseException | None] = [None] * len(batch)
            try:
                self._commit_batch([rows for rows, _ in batch], outcomes)
            except BaseException as error:  # never leave a caller waiting, whatever happened
                outcomes = [error] * len(batch)
            _settle([waiter for _, waiter in batch], outcomes)

    def _commit_batch(self, items: list[Rows], outcomes: list[BaseException | None]) -> None:
        try:
            self._insert(items)
        except (OperationalError, InterfaceError, PoolTimeoutError) as error:
            outcomes[:] = [error] * len(items)
        except Exception as error:
            if len(items) == 1:
                outcomes[0] = error
                return
            for index, rows in enumerate(items):
                try:
                    self._insert([rows])
                except Exception as own_error:
                    outcomes[index] = own_error

    def _insert(self, items: list[Rows]) -> None:
        """One transaction for every item's rows, a statement per target and set of columns,
        parents before children across the whole batch: each item lists its parents first, and
        a table comes after every table it has a foreign key to (an item with a request row and
        one without must not put the evaluations first; a record queued before its evaluation,
        in another item, must not come first either)."""
        by_target: dict[tuple[Target, tuple[str, ...]], list[dict[str, Any]]] = {}
        parents: dict[Target, set[Target]] = {}
        shapes = set()
        for rows in items:
            previous = None
            shape = []
            for table, row in rows:
                key = table, tuple(row)
                by_target.setdefault(key, []).append(row)
                shape.append(key)
                if previous is not None and previous is not table:
                    parents.setdefault(table, set()).add(previous)
                previous = table
            shapes.add(tuple(shape))
        targets = list(dict.fromkeys(target for target, _ in by_target))
        if len(targets) > 1:
            tables = {target: _table_of(target) for target in targets}
            for target in targets:  # and the tables each refers to, by their foreign keys
                referred = {key.column.table for key in tables[target].foreign_keys}
                parents.setdefault(target, set()).update(t for t in targets if t is not target and tables[t] in referred)
            rank = {t: i for i, t in enumerate(graphlib.TopologicalSorter(
                {t: parents.get(t, ()) for t in targets}).static_order())}
            by_target = dict(sorted(by_target.items(), key=lambda item: rank[item[0][0]]))
        # uniform: every item holds one row of each target (SQLite writes such a batch in one statement)
        self._insert_rows(by_target, len(shapes) == 1 and len(by_target) == len(next(iter(shapes))))


def _table_of(target: Target) -> Table:
    return target if isinstance(target, Table) else target.table


def _settle(waiters: list[Any], outcomes: list[BaseException | None]) -> None:
    """Answer each waiter: threads at once, each event loop with one call for all of its waiters."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future, BaseException | None]]] = {}
    for waiter, outcome in zip(waiters, outcomes):
        if isinstance(waiter, Future):
            if outcome is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(outcome)
        else:
            loop, future = waiter
            by_loop.setdefault(loop, []).append((future, outcome))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_answer, answers)
        except RuntimeError:  # that loop has closed: nobody is waiting any more
            pass


def _answer(answers: list[tuple[asyncio.Future, BaseException | None]]) -> None:
    for future, outcome in answers:
        if future.done():  # cancelled meanwhile (the client went away)
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
