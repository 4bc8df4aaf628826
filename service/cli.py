"""The ``coverage-criteria`` command.

Exit status: 0 done; 1 golden cases failed; 2 bad input (a case, a rule file, the command line),
with field-level messages on standard error.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from service.engine.durable import EngineError
from service.evaluations.batch import evaluate_in_workers, result_json
from service.errors import InvalidInput
from service.json_input import parse_json
from service.json_output import json_bytes, write_batch
from service.policy.rules import RuleError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def json_text(data: Any, indent: int | None) -> str:
    """``data`` as JSON, compact or indented by 2 (see service.json_output)."""
    return json_bytes(data, indent=bool(indent)).decode()


def _print_json(data: Any, indent: int | None) -> None:
    sys.stdout.write(json_text(data, indent) + "\n")


def _fail(error: InvalidInput) -> int:
    """The API's 422 body, on one line of standard error; exit 2."""
    sys.stderr.write(json.dumps(error.to_dict(), ensure_ascii=False) + "\n")
    return EXIT_BAD_INPUT


def _read_json(source: str) -> Any:
    try:  # the bytes are not kept here: parse_json lets go of them once decoded (a batch is not held twice)
        return parse_json(sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes())
    except OSError as error:
        raise InvalidInput.one("body", f"cannot read {source}: {error.strerror or error}", "read_error") from None


def _evaluator(rules_dir: str | None):
    from service.engine.evaluation import Evaluator

    return Evaluator.from_rules_dir(rules_dir)


def cmd_evaluate(args: argparse.Namespace) -> int:
    indent = None if args.compact else 2
    try:
        payload = _read_json(args.case)
        evaluator = _evaluator(args.rules)
        if _is_bundle(payload):
            return _evaluate_bundle(evaluator, payload, indent)
        if not isinstance(payload, list):
            _print_json(evaluator.evaluate(payload), indent)
            return EXIT_OK
        today = datetime.date.today()  # one day for every undated case of the batch
        evaluator.prepare_batch(payload, today)  # raises before anything is printed; each case is now prepared
    except InvalidInput as error:
        return _fail(error)
    # The batch stays in memory to the end: keep the collector's full collections from scanning
    # it again and again (for 100,000 cases they took a quarter of the time).
    gc.freeze()
    if args.workers > 1 and len(payload) > 1:
        texts = evaluate_in_workers(evaluator.catalog, payload, args.workers, indent)
    else:
        texts = (result_json(evaluator, case, indent) for case in payload)
    sys.stdout.flush()
    sys.stdout.buffer.flush()
    write_batch(sys.stdout.fileno(), texts)
    return EXIT_OK


def _is_bundle(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("resourceType") == "Bundle"


def _evaluate_bundle(evaluator: Any, bundle: Any, indent: int | None) -> int:
    """A FHIR Bundle: its result, or its OperationOutcome on standard error (exit 2)."""
    from service.evaluations.bundle import evaluate_bundle
    from service.fhir.outcome import OperationOutcomeError

    try:
        _, result = evaluate_bundle(evaluator, bundle)
    except OperationOutcomeError as error:
        sys.stderr.write(json_text(error.to_resource(), 2) + "\n")
        return EXIT_BAD_INPUT
    _print_json(result, indent)
    return EXIT_OK


def cmd_policies(args: argparse.Namespace) -> int:
    evaluator = _evaluator(args.rules)
    if args.json:
        _print_json(evaluator.policies(), 2)
        return EXIT_OK
    for policy in evaluator.policies():
        print(f"{policy['id']}{'  (default)' if policy['default'] else ''}  {policy['title']}")
        for v in policy["versions"]:
            until = f" to {v['effective_to']}" if v["effective_to"] else ""
            print(f"  {v['version']}  {v['status']}  in force from {v['effective_from']}{until}")
    return EXIT_OK


def cmd_rules_check(args: argparse.Namespace) -> int:
    from service.policy_tools.golden import run_golden

    evaluator = _evaluator(args.dir)
    outcomes = run_golden(evaluator)
    for version in evaluator.catalog.all_versions():
        mine = [o for o in outcomes if o.version is version]
        failed = [o for o in mine if not o.passed]
        print(f"{version.key}: {len(version.criteria)} criteria, {len(version.flags)} flags, "
              f"{len(mine) - len(failed)}/{len(mine)} golden cases pass")
        for outcome in failed:
            for problem in outcome.problems:
                print(f"  FAIL {outcome.name}: {problem}")
    return EXIT_OK if all(o.passed for o in outcomes) else EXIT_FAILED


def cmd_rules_diff(args: argparse.Namespace) -> int:
    from service.policy_tools.diff import diff_paths, report

    changes = diff_paths(Path(args.old), Path(args.new))
    if args.json:
        _print_json([c.to_dict() for c in changes], 2)
    else:
        sys.stdout.write(report(changes, Path(args.old), Path(args.new)))
    return EXIT_OK


def cmd_rules_impact(args: argparse.Namespace) -> int:
    from service.policy_tools.impact import describe, replay
    from service.policy.rules import load_catalog
    from service.settings import Settings
    from service.store.database import Database

    candidate = load_catalog(Path(args.candidate))  # refused here, before the database is opened
    # Read as it is (no migration); the one write is the audit trail's record of this export of
    # case data, the report's ids and outcomes (contract, "Audit trail"): a report whose record
    # could not be stored is not printed, as the API withholds such an answer.
    database = Database(Settings.from_env().database_url)
    try:
        try:
            reports = replay(database, candidate, policy=args.policy, since=args.since, until=args.until,
                             workers=args.workers, progress=_progress_bar if sys.stderr.isatty() else None)
        except InvalidInput as error:
            return _fail(error)
        if not _record_export(database):
            return EXIT_FAILED
    finally:
        database.dispose()
    if args.json:
        _print_json(reports[0].to_dict() if len(reports) == 1 else [r.to_dict() for r in reports], 2)
    else:
        sys.stdout.write("\n".join(describe(r) for r in reports))
    return EXIT_OK


def _record_export(database: Any) -> bool:
    """The audit record of an export of stored evaluations by the operator; False, said on
    standard error, when the database would not store it."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.audit.record import Access, Actor

    try:
        database.writer.commit(Access("export", "evaluation", actor=Actor.operator()).rows(200))
    except SQLAlchemyError as error:
        reason = getattr(error, "orig", None) or type(error).__name__
        sys.stderr.write(f"coverage-criteria: the audit trail could not record this export ({reason}); "
                         "the report is withheld\n")
        return False
    return True


def _progress_bar(total: int | None):
    """A progress bar on standard error (a terminal): its ``update``."""
    from tqdm import tqdm

    return tqdm(total=total, unit="evaluations", file=sys.stderr, leave=False).update


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date such as 2026-11-01, got {text!r}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    from service.app import serve

    serve(args.host, args.port, args.workers)
    return EXIT_OK


def _database():
    """The configured database, migrated; says on stderr which one it is, and whether it was
    just created (``./data`` is relative to the current folder unless
    COVERAGE_CRITERIA_DATA_DIR or COVERAGE_CRITERIA_DATABASE_URL says otherwise)."""
    from service.settings import DATABASE_FILE, Settings
    from service.store.database import Database, sqlite_file

    settings = Settings.from_env()
    database = Database(settings.database_url)
    path = sqlite_file(database.url)
    new = path is not None and (not path.exists() or path.stat().st_size == 0)
    database.migrate()
    print(f"database: {database}", file=sys.stderr)
    if new and path == settings.data_dir / DATABASE_FILE:
        print(f"  (created just now; `serve` uses it when run with COVERAGE_CRITERIA_DATA_DIR={settings.data_dir}, "
              f"or from {settings.data_dir.parent} without settings)", file=sys.stderr)
    elif new:
        print("  (created just now)", file=sys.stderr)
    return database


def cmd_keys_create(args: argparse.Namespace) -> int:
    from service.store.keys import create_key

    try:
        key_id, plaintext = create_key(_database(), args.role, args.label, args.org, args.name)
    except ValueError as error:
        print(f"keys create: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"Created {args.role} key {key_id} of organization {args.org}. It is shown once; store it now:",
          file=sys.stderr)
    print(plaintext)
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    from service.store.keys import list_keys

    for key in list_keys(_database()):
        state = f"revoked {key['revoked_at']}" if key["revoked_at"] else "active"
        named = "  ".join(filter(None, [key["name"], key["label"]]))
        print(f"{key['id']}  {key['role']:<8}  {key['organization']:<16}  {state:<30}  created {key['created_at']}"
              f"  {named}".rstrip())
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from service.store.keys import revoke_key

    if not revoke_key(_database(), args.id):
        print(f"no active key {args.id}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"revoked {args.id}")
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    from service.determinations.metrics import metrics, metrics_csv

    if args.to < args.since:
        return _fail(InvalidInput.one("--to", "Must be on or after --from", "value_error"))
    figures = metrics(_database(), args.since, args.to)
    if args.json:
        _print_json(figures, 2)
    else:
        sys.stdout.write(metrics_csv(figures))
    return EXIT_OK


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coverage-criteria",
        description="Check prior-authorization cases against declarative, cited coverage criteria. "
        "Findings support a reviewer's determination; they are not a coverage decision.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    rules_help = "rules folder (default: $COVERAGE_CRITERIA_RULES_DIR, else the bundled rules)"

    evaluate = commands.add_parser("evaluate", help="evaluate a case (or a JSON array of cases)")
    evaluate.add_argument("case", help="JSON file holding one case or an array of cases; - for stdin")
    evaluate.add_argument("--rules", help=rules_help)
    evaluate.add_argument("--compact", action="store_true", help="print JSON on one line")
    evaluate.add_argument("--workers", type=_positive, default=1,
                          help="processes evaluating an array of cases (default 1; worth it from a few "
                               "thousand cases: each takes ~0.5 s to start)")
    evaluate.set_defaults(func=cmd_evaluate)

    policies = commands.add_parser("policies", help="list the policies and their versions")
    policies.add_argument("--rules", help=rules_help)
    policies.add_argument("--json", action="store_true", help="print JSON")
    policies.set_defaults(func=cmd_policies)

    rules = commands.add_parser("rules", help="work with rule folders")
    rules_commands = rules.add_subparsers(dest="rules_command", required=True)
    check = rules_commands.add_parser("check", help="validate rule folders and run their golden cases")
    check.add_argument("dir", nargs="?", help=rules_help)
    check.set_defaults(func=cmd_rules_check)
    diff = rules_commands.add_parser(
        "diff", help="what changed between two policy versions (criteria, flags, thresholds, citations)")
    diff.add_argument("old", help="the old version: its folder, its policy.yaml, or a rules folder")
    diff.add_argument("new", help="the new version, likewise")
    diff.add_argument("--json", action="store_true", help="print the changes as JSON")
    diff.set_defaults(func=cmd_rules_diff)
    impact = rules_commands.add_parser(
        "impact", help="replay stored evaluations under a candidate rules folder and report what changes")
    impact.add_argument("candidate", help="a rules folder holding the candidate version(s) and fields.yaml")
    impact.add_argument("--policy", help="only this policy (default: every policy the candidate holds)")
    impact.add_argument("--since", type=_date, help="only evaluations stored on or after this date (UTC)")
    impact.add_argument("--until", type=_date, help="only evaluations stored on or before this date (UTC)")
    impact.add_argument("--json", action="store_true", help="print the report as JSON")
    impact.add_argument("--workers", type=_positive, default=1,
                        help="processes replaying the evaluations (default 1)")
    impact.set_defaults(func=cmd_rules_impact)

    serve = commands.add_parser(
        "serve", help="start the REST service (on 127.0.0.1:8000 unless --host/--port say otherwise)",
        description="Start the REST service, the CDS Hooks services and the review page. It listens on "
                    "127.0.0.1:8000 (loopback only) unless --host and --port say otherwise; migrations run first.")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--workers", type=_positive, default=1, help="worker processes (default 1)")
    serve.set_defaults(func=cmd_serve)

    figures = commands.add_parser(
        "metrics", help="the CMS-0057-F figures for requests received in a period (CSV, or JSON with --json)")
    figures.add_argument("--from", dest="since", type=_date, required=True, help="first day received (UTC), YYYY-MM-DD")
    figures.add_argument("--to", type=_date, required=True, help="last day received (UTC), inclusive")
    figures.add_argument("--json", action="store_true", help="print JSON (the API's shape) instead of CSV")
    figures.set_defaults(func=cmd_metrics)

    keys = commands.add_parser("keys", help="manage API keys")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_commands.add_parser("create", help="create a key; prints it once, as the last line")
    create.add_argument("--role", required=True, choices=["intake", "reviewer", "auditor"],
                        help="intake: submits and reads its organization's evaluations; reviewer: reads every "
                        "organization's and reviews them; auditor: reads the audit trail and metrics only")
    create.add_argument("--org", default="default",
                        help="the organization the key belongs to (default: default); an intake key sees only its own")
    create.add_argument("--name", help="a reviewer's name, as notes, determinations and printouts show it")
    create.add_argument("--label", help="who or what the key is for")
    create.set_defaults(func=cmd_keys_create)
    keys_commands.add_parser("list", help="list keys (never their secrets)").set_defaults(func=cmd_keys_list)
    revoke = keys_commands.add_parser("revoke", help="revoke a key")
    revoke.add_argument("id")
    revoke.set_defaults(func=cmd_keys_revoke)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except RuleError as error:
        print(f"invalid rules:\n{error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except EngineError as error:  # our bug, not the input's: say so without a traceback
        print(f"internal error in the rules engine: {error}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as error:  # noqa: BLE001 - a bug of ours: one line saying so, never a traceback
        message = " ".join(str(error).split())[:300]
        print(f"internal error ({type(error).__name__}: {message}); please report it with the command that "
              "caused it", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
