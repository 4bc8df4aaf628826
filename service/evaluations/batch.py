"""A batch of prepared cases evaluated in worker processes (``coverage-criteria evaluate --workers N``).

An evaluator runs one case at a time (its durable-rules host sits behind a lock) and evaluating
is CPU-bound Python, so only processes put more CPUs to work. Each worker builds its own
Evaluator, and so its own durable-rules host, from the catalogue the parent has loaded, and sends
back each result as JSON text. The parent has validated and prepared every case first (its
policy version and day chosen), so results are those one process would give, in the same order.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

from service.json_output import json_bytes

_worker: tuple[Any, dict[str, Any], int | None] | None = None


def _start_worker(catalog: Any, indent: int | None) -> None:
    global _worker
    from service.engine.evaluation import Evaluator

    _worker = (Evaluator(catalog), {version.key: version for version in catalog.all_versions()}, indent)


def _evaluate_in_worker(sent: tuple) -> bytes:
    from service.engine.evaluation import Prepared

    evaluator, versions, indent = _worker
    external_id, values, version_key, day = sent
    return result_json(evaluator, Prepared(external_id, values, versions[version_key], day), indent)


def result_json(evaluator: Any, prepared: Any, indent: int | None) -> bytes:
    """A prepared case's result as JSON bytes: as the evaluator writes it, or indented."""
    evaluated = evaluator.evaluate_prepared(prepared)
    return json_bytes(evaluated.result(), True) if indent else evaluated.json


def evaluate_in_workers(catalog: Any, prepared: list[Any], workers: int, indent: int | None) -> Iterator[bytes]:
    sent = ((p.external_id, p.values, p.version.key, p.day) for p in prepared)  # a version by its key
    with multiprocessing.get_context("spawn").Pool(workers, _start_worker, (catalog, indent)) as pool:
        yield from pool.imap(_evaluate_in_worker, sent, chunksize=64)
