"""The impact of a policy change: replay stored evaluations under a candidate version.

``coverage-criteria rules impact CANDIDATE_DIR`` reads every evaluation stored under a policy the
candidate folder also holds, evaluates its case again under the candidate's newest version of that
policy, and counts how the findings move (shared/contract.md, "Policy impact"). It only reads:
the rows stream from a server-side cursor (PostgreSQL) or SQLite's lazy cursor in batches, inside
a read-only transaction, so memory stays bounded however many evaluations are stored; only the
evaluations that changed are kept, for the report.

With ``workers`` > 1, batches of rows are evaluated in worker processes (each with its own
durable-rules host, as ``evaluate --workers`` does), at most two batches per worker in flight.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import multiprocessing
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pydantic_core
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection

from service.engine.evaluation import Evaluator
from service.errors import InvalidInput
from service.policy.rules import Catalog, PolicyVersion
from service.store.database import Database
from service.store.evaluations import RESULT_COLUMNS, result_text
from service.store.tables import Evaluation

BATCH = 250  # rows per batch read from the database and handed to a worker
# glibc keeps the heap that the ~20 kB stored results of a batch leave free: without handing it
# back after each batch, resident memory crept up ~0.3 kB per row replayed (measured, not a leak:
# Python's traced memory stayed flat). Elsewhere (musl, macOS) there is nothing to do.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None
_malloc_trim = getattr(_LIBC, "malloc_trim", None)
ADDED, REMOVED = "(added)", "(removed)"


@dataclass
class PolicyImpact:
    """The report for one policy, shaped as the contract shows it (``to_dict``)."""

    policy: str
    candidate_version: str
    evaluations: int = 0
    changed: int = 0
    outcomes: Counter = field(default_factory=Counter)
    criteria: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    flags: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    changed_evaluations: list[dict[str, Any]] = field(default_factory=list)
    not_replayed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "candidate_version": self.candidate_version,
            "evaluations": self.evaluations,
            "changed": self.changed,
            "outcomes": dict(self.outcomes.most_common()),
            "criteria": {i: dict(c.most_common()) for i, c in self.criteria.items()},
            "flags": {i: dict(c.most_common()) for i, c in self.flags.items()},
            "changed_evaluations": self.changed_evaluations,
            "not_replayed": self.not_replayed,
        }


def _statuses(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["id"]: item["status"] for item in items}


def _moves(before: dict[str, str], after: dict[str, str]) -> dict[str, str]:
    """``{id: "met -> not_met"}`` for every criterion (or flag) whose status differs."""
    moves = {}
    for item_id in dict.fromkeys([*before, *after]):
        old, new = before.get(item_id, ADDED), after.get(item_id, REMOVED)
        if old != new:
            moves[item_id] = f"{old} -> {new}"
    return moves


# --- replaying one batch (in this process or a worker) ------------------------------------------

Row = tuple[str, str, str, str, bytes | None, str]  # id, external_id, policy_id, case_json, *RESULT_COLUMNS
_replayer: tuple[Evaluator, dict[str, PolicyVersion]] | None = None


def _start(catalog: Catalog) -> None:
    global _replayer
    _replayer = (Evaluator(catalog), {pid: versions[-1] for pid, versions in catalog.versions.items()})


def _replay(rows: list[Row]) -> list[tuple]:
    """For each row: ``(policy, id, external_id, outcome move, criteria moves, flag moves)``, or
    ``(policy, id, external_id, problem)`` when the stored case cannot be evaluated again."""
    evaluator, newest = _replayer
    out = []
    for evaluation_id, external_id, policy_id, case_json, *result in rows:
        stored = pydantic_core.from_json(result_text(*result))
        try:
            payload = pydantic_core.from_json(case_json)
            case = evaluator.validate(payload)
            day = case.service_date or datetime.date.fromisoformat(stored["service_date"])
            result = evaluator.evaluate_parsed(case, newest[policy_id], day)
        except InvalidInput as error:
            problems = [f"{e['field']}: {e['message']}" for e in error.errors]
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            out.append((policy_id, evaluation_id, external_id, "; ".join(problems[:3]) + more))
            continue
        except (ValueError, KeyError, TypeError) as error:  # not a JSON object, no stored date
            out.append((policy_id, evaluation_id, external_id, f"unreadable stored evaluation: {error}"))
            continue
        outcome = (stored["summary"]["outcome"], result["summary"]["outcome"])
        out.append((policy_id, evaluation_id, external_id, outcome,
                    _moves(_statuses(stored["criteria"]), _statuses(result["criteria"])),
                    _moves(_statuses(stored["flags"]), _statuses(result["flags"]))))
    if _malloc_trim:
        _malloc_trim(0)
    return out


def _replayed(catalog: Catalog, batches: Iterable[list[Row]], workers: int) -> Iterator[list[tuple]]:
    if workers <= 1:
        _start(catalog)
        yield from map(_replay, batches)
        return
    with multiprocessing.get_context("spawn").Pool(workers, _start, (catalog,)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_replay, (batch,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


# --- reading the stored evaluations --------------------------------------------------------------


def _filters(policies: list[str], since: datetime.date | None, until: datetime.date | None) -> list:
    conditions = [Evaluation.policy_id.in_(policies)]
    if since:
        conditions.append(Evaluation.created_at >= datetime.datetime.combine(since, datetime.time(), datetime.UTC))
    if until:
        next_day = until + datetime.timedelta(days=1)
        conditions.append(Evaluation.created_at < datetime.datetime.combine(next_day, datetime.time(), datetime.UTC))
    return conditions


def _read_only(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET TRANSACTION READ ONLY"))
    else:
        connection.exec_driver_sql("PRAGMA query_only = ON")


def _batches(connection: Connection, conditions: list) -> Iterator[list[Row]]:
    statement = (
        select(Evaluation.id, Evaluation.external_id, Evaluation.policy_id, Evaluation.case_json, *RESULT_COLUMNS)
        .where(*conditions)
        # By the primary key: its index gives the rows in order without sorting them first (by
        # created_at, SQLite sorted every matched row, 20 kB results and all, before the first came
        # back, and the peak memory grew with the rows).
        .order_by(Evaluation.id)
    )
    rows = connection.execution_options(stream_results=True, yield_per=BATCH).execute(statement)
    for partition in rows.partitions():
        yield [tuple(row) for row in partition]


def replay(database: Database, candidate: Catalog, *, policy: str | None = None,
           since: datetime.date | None = None, until: datetime.date | None = None, workers: int = 1,
           progress: Callable[[int | None], Any] | None = None) -> list[PolicyImpact]:
    """Replay the stored evaluations of ``policy`` (default: every policy the candidate holds)
    under the candidate's newest versions; one report per policy, in the candidate's order.

    ``progress(total)``, when given, is called once with the number of evaluations to replay (a
    count query, so leave it out when nobody watches) and must return a callable taking the
    number just replayed (e.g. a tqdm bar's ``update``).
    """
    if policy is not None and policy not in candidate.versions:
        known = ", ".join(candidate.versions)
        raise InvalidInput.one("--policy", f"the candidate folder has no policy {policy!r} (it has: {known})",
                               "unknown_policy")
    policies = [policy] if policy else list(candidate.versions)
    reports = {pid: PolicyImpact(pid, candidate.versions[pid][-1].version) for pid in policies}
    conditions = _filters(policies, since, until)
    with database.engine.connect() as connection:
        _read_only(connection)
        try:
            advance = None
            if progress:
                advance = progress(connection.scalar(select(func.count()).select_from(Evaluation).where(*conditions)))
            for outcomes in _replayed(candidate, _batches(connection, conditions), workers):
                for replayed in outcomes:
                    _tally(reports[replayed[0]], replayed)
                if advance:
                    advance(len(outcomes))
        finally:
            if connection.dialect.name == "sqlite":
                connection.rollback()
                connection.exec_driver_sql("PRAGMA query_only = OFF")
    return list(reports.values())


def _tally(report: PolicyImpact, replayed: tuple) -> None:
    if len(replayed) == 4:
        _, evaluation_id, external_id, problem = replayed
        report.not_replayed.append({"evaluation_id": evaluation_id, "external_id": external_id, "problem": problem})
        return
    _, evaluation_id, external_id, (before, after), criteria, flags = replayed
    report.evaluations += 1
    if before == after and not criteria and not flags:
        return
    report.changed += 1
    outcome = f"{before} -> {after}" if before != after else before
    if before != after:
        report.outcomes[outcome] += 1
    for kind, moves in (("criteria", criteria), ("flags", flags)):
        for item_id, move in moves.items():
            getattr(report, kind)[item_id][move] += 1
    report.changed_evaluations.append({"evaluation_id": evaluation_id, "external_id": external_id,
                                       "outcome": outcome, "criteria": criteria, "flags": flags})


def describe(report: PolicyImpact, limit: int = 50) -> str:
    """The report for people."""
    lines = [f"{report.policy}: candidate version {report.candidate_version}",
             f"  {report.evaluations} stored evaluations replayed, {report.changed} changed"]
    for title, counts in (("Outcomes", {"": report.outcomes}), ("Criteria", report.criteria),
                          ("Flags", report.flags)):
        if any(counts.values()):
            lines.append(f"  {title}:")
            for item_id, moves in counts.items():
                for move, count in moves.most_common():
                    lines.append(f"    {item_id + ': ' if item_id else ''}{move}: {count}")
    if report.changed_evaluations:
        lines.append("  Changed evaluations:")
        for changed in report.changed_evaluations[:limit]:
            moves = "; ".join(f"{i} {m}" for i, m in (*changed["criteria"].items(), *changed["flags"].items()))
            lines.append(f"    {changed['evaluation_id']}  {changed['external_id']}  {changed['outcome']}"
                         f"{'  (' + moves + ')' if moves else ''}")
        if len(report.changed_evaluations) > limit:
            lines.append(f"    … and {len(report.changed_evaluations) - limit} more (--json lists them all)")
    if report.not_replayed:
        lines.append(f"  Not replayed ({len(report.not_replayed)}): their stored cases do not validate now")
        for skipped in report.not_replayed[:limit]:
            lines.append(f"    {skipped['evaluation_id']}  {skipped['external_id']}  {skipped['problem']}")
    return "\n".join(lines) + "\n"
