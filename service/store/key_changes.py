"""Keys read once and kept, on SQLite, until a key changes: the key check of every request
without a call into SQLite.

On SQLite every commit by the group commit's writer makes SQLite drop the page cache of the
connection that checks keys (WAL mode): the check read its pages again each time, ~39 µs where
it takes ~11 µs without commits in between, and ~90 µs inside a busy server, whose event loop
lets the writer take the GIL during each call into SQLite (bench/RESULTS-http.md).

So a process keeps the key rows it has read, beside a counter that every change of a key bumps:
8 bytes in a file next to the database (``<database>-keys``, created 0600 like the database),
mapped into the memory of every process that uses that database on this host (a SQLite file
serves one host). ``revoke_key`` bumps it after its commit, before it returns, so a revoked key
is refused on its very next request in every process, the command line's revocation included.
Reading the counter is a load from shared memory: no system call. A kept row also expires after
:data:`KEPT_SECONDS`, should a process die between its commit and its bump, or the table be
changed by hand. New keys need no bump: a key id not kept is read from the database.

PostgreSQL, which several hosts share, keeps nothing: each request reads its key (a round trip
with no page cache to lose).
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import threading
import time
from pathlib import Path
from typing import Any

KEPT_SECONDS = 1.0
KEY_CHANGES_SUFFIX = "-keys"  # the counter's file: the database's name and this
_COUNTER = struct.Struct("<Q")


class KeyChanges:
    """The shared counter of one database's key changes, and the rows this process keeps."""

    def __init__(self, path: Path) -> None:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size < _COUNTER.size:
                os.ftruncate(descriptor, _COUNTER.size)
            self._map = mmap.mmap(descriptor, _COUNTER.size)
        finally:
            os.close(descriptor)
        self._kept: dict[str, tuple[Any, int, float]] = {}
        self._lock = threading.Lock()

    def bump(self) -> None:
        """Say that a key changed: every process drops the rows it keeps. A random new value,
        not an increment, so that two processes bumping at once need no lock."""
        with self._lock:
            self._kept.clear()
        _COUNTER.pack_into(self._map, 0, secrets.randbits(64))

    def kept(self, key_id: str) -> Any | None:
        """The row kept for ``key_id`` if no key changed since it was read and it is recent."""
        entry = self._kept.get(key_id)
        if entry is None:
            return None
        row, counter, until = entry
        if counter != _COUNTER.unpack_from(self._map)[0] or time.monotonic() >= until:
            return None
        return row

    def read(self, key_id: str, read: Any) -> Any | None:
        """``read()``'s row for ``key_id``, kept when there is one (an unknown id keeps nothing:
        made-up ids cannot grow what is kept)."""
        counter = _COUNTER.unpack_from(self._map)[0]  # before the read: a change meanwhile is seen next time
        row = read()
        if row is not None:
            with self._lock:
                self._kept[key_id] = (row, counter, time.monotonic() + KEPT_SECONDS)
        return row
