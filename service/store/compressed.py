"""A column that stores its text compressed: the result of an evaluation as a zstd frame (level
1: a ~21 kB result takes ~3.5 kB and ~22 µs to compress, ~11 µs to read back).

Rows are written with the text itself and the column's bind processing compresses it, so the
work happens where the insert is prepared: for stored evaluations, on the group commit's writer
thread, not on the event loop that answers requests; there a batch's results are compressed in
one call (:meth:`CompressedText.process_bind_many`, by service.store.driver_sql), which lets go
of the GIL once for all of them. (Compressed one by one, each call let go of the GIL and took it
back: the writer then waited for the busy event loop to hand it over, once a result, and stored
evaluations/s fell 14 % though each cost less CPU; measured with bench/http_compare.py.)
Reads get the frame; :func:`decompress` turns it back (service.store.evaluations.result_text).
"""

from __future__ import annotations

import threading
from typing import Any

import zstandard
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

ZSTD_LEVEL = 1
_codecs = threading.local()  # zstandard's compressors and decompressors serve one thread at a time


def compress_many(texts: list[bytes]) -> list[bytes]:
    """Each text's zstd frame, in one call that lets go of the GIL once."""
    try:
        compressor = _codecs.compressor
    except AttributeError:
        compressor = _codecs.compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    if len(texts) == 1:
        return [compressor.compress(texts[0])]
    frames = compressor.multi_compress_to_buffer(texts, threads=0)
    return [frames[index].tobytes() for index in range(len(texts))]


def decompress(frame: bytes) -> bytes:
    try:
        decompressor = _codecs.decompressor
    except AttributeError:
        decompressor = _codecs.decompressor = zstandard.ZstdDecompressor()
    return decompressor.decompress(frame)


class CompressedText(TypeDecorator):
    """Written as text (``str`` or UTF-8 ``bytes``), stored and read as its zstd frame."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> bytes | None:
        if value is None:
            return None
        return compress_many([_utf8(value)])[0]

    @staticmethod
    def process_bind_many(values: list[Any]) -> list[bytes | None]:
        """The values of many rows at once (service.store.driver_sql)."""
        texts = [_utf8(value) for value in values if value is not None]
        frames = iter(compress_many(texts) if texts else ())
        return [None if value is None else next(frames) for value in values]


def _utf8(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
