"""Group commit: one writer thread commits every evaluation waiting at that moment in one
transaction, so one fsync serves many, and each caller learns that its own rows are durable only
once that commit has returned."""

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

    def __init__(self, insert: Callable[[dict[Target, list[dict[str, Any]]]], None]) -> None:
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
        """One transaction for every item's rows, a statement per table, parents before children
        across the whole batch (an item with a request row and one without must not put the
        evaluations first: each item lists its parents first, and their union is kept in order)."""
        by_table: dict[Target, list[dict[str, Any]]] = {}
        parents: dict[Target, set[Target]] = {}
        for rows in items:
            previous = None
            for table, row in rows:
                by_table.setdefault(table, []).append(row)
                if previous is not None and previous is not table:
                    parents.setdefault(table, set()).add(previous)
                previous = table
        if parents and len(by_table) > 1:
            ordered = graphlib.TopologicalSorter({t: parents.get(t, ()) for t in by_table}).static_order()
            by_table = {table: by_table[table] for table in ordered}
        self._insert_rows(by_table)


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
