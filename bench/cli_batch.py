"""Time ``coverage-criteria evaluate --compact`` on a JSON array of cases, output to a file; print JSON figures.

    python bench/cli_batch.py [--cases 20000] [--workers 1] [--generated]

The cases are those of ../shared/bench/cases-20000.json.gz (the issue's target is measured on
them: 20,000 varied ISASS cases), or, with ``--generated`` or where that file is absent, generated
ones that vary around every threshold and drop fields at random (seeded). The command's output
goes to a file in a temporary folder (100,000 results are ~2 GB of JSON); its results are counted,
and checked to be in order, by scanning that file. ``us_per_case`` is wall time end to end
(start-up included), against the target of 150 µs; ``cpu_us_per_case`` the command's CPU time
(workers included), user and system. ``peak_rss_mib`` is the peak total resident memory of the
command and its worker processes, sampled every 50 ms; ``peak_rss_largest_process_mib`` is the
kernel's exact peak of the largest one.

``bytes`` says what the ~21 kB of a compact result cost, measured in this process on the same
results: their size and the part of it that is citations (repeated in full under every
criterion and flag, as the contract has them); the CPU time of one copy of a result in memory
(the result builder makes one) and of writing the results to a file as the command does; and the
same for the results with every ``citations`` list emptied, so the difference is what repeating
the citations costs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import mmap
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VALUES = {
    "patient": {"age_years": [17, 18, 52, 75, 76], "bmi": [24.0, 35.0, 35.5]},
    "low_back_pain": {
        "duration_months": [2.9, 3, 26], "mechanical": [True, False], "axial_predominant": [True, False],
        "predominant_pain_type": ["nociceptive", "neuropathic", "mixed"], "nrs": [5.9, 6, 7],
        "odi_percent": [20, 21, 44], "quality_of_life_severely_impaired": [True, False],
    },
    "conservative_care": {
        "medication_outcome": ["failed", "not_tolerated", "improved", "not_tried"],
        "physical_therapy_outcome": ["failed", "not_tolerated", "improved", "not_tried"],
        "duration_months": [2, 3, 14],
    },
    "multifidus_dysfunction": {
        "prone_instability_test": ["positive", "negative", "not_performed"],
        "imaging": ["atrophy_or_fatty_infiltration", "no_abnormality", "not_performed"],
    },
    "surgery": {"spine_surgery_indicated": [True, False], "prior_spine_surgery_at_or_below_t8": [True, False]},
    "device": {"able_to_operate": [True, False], "fit_for_implant_surgery": [True, False]},
    "other_findings": {"scoliosis": [True, False], "neurological_deficit": [True, False],
                       "stenosis_with_leg_pain": [True, False], "scs_candidate": [True, False]},
}


def generate(count: int, seed: int = 20231001) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for i in range(count):
        case: dict = {"external_id": f"BENCH-{i:07d}", "service_date": "2026-12-01"}
        for section, fields in VALUES.items():
            chosen = {name: rng.choice(options) for name, options in fields.items() if rng.random() < 0.85}
            if chosen:
                case[section] = chosen
        cases.append(case)
    return cases


SHARED_CASES = Path(__file__).resolve().parents[2] / "shared" / "bench" / "cases-20000.json.gz"
TARGET_US_PER_CASE = 150


def bench_cases(count: int, generated: bool = False) -> tuple[list[dict], str]:
    """``count`` cases (the shared bench cases, repeated with new external ids if more are asked
    for, else generated ones) and where they came from."""
    if generated or not SHARED_CASES.exists():
        return generate(count), "generated (bench/cli_batch.py)"
    shared = json.loads(gzip.decompress(SHARED_CASES.read_bytes()))
    cases = [dict(shared[i % len(shared)], external_id=f"BENCH-{i:07d}") for i in range(count)]
    return cases, str(SHARED_CASES)


def bytes_cost(cases: list[dict], folder: Path) -> dict:
    """What the bytes of compact results cost: see the module docstring."""
    import orjson

    from service.engine.evaluation import Evaluator

    evaluator = Evaluator.from_rules_dir()
    full = [evaluator.evaluate_json(case).json for case in cases]
    stripped = []
    for text in full:
        result = orjson.loads(text)
        for finding in (*result["criteria"], *result["flags"]):
            finding["citations"] = []
        stripped.append(orjson.dumps(result))

    def cpu(function) -> float:
        best = float("inf")
        for _ in range(5):
            before = resource.getrusage(resource.RUSAGE_SELF)
            function()
            after = resource.getrusage(resource.RUSAGE_SELF)
            best = min(best, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return round(best / len(cases) * 1e6, 1)

    def written(texts: list[bytes]) -> None:
        path = folder / "bytes.json"
        with path.open("wb") as out:
            write_all(out.fileno(), texts)
        path.unlink()

    figures = {}
    for name, texts in (("as_returned", full), ("citations_emptied", stripped)):
        figures[name] = {
            "bytes_per_case": round(sum(map(len, texts)) / len(texts)),
            "copy_cpu_us_per_case": cpu(lambda: [len(bytes(memoryview(text))) for text in texts]),
            "write_to_file_cpu_us_per_case": cpu(lambda: written(texts)),
        }
    figures["citations_share_of_bytes"] = round(1 - figures["citations_emptied"]["bytes_per_case"]
                                                / figures["as_returned"]["bytes_per_case"], 2)
    return figures


def write_all(fd: int, texts: list[bytes]) -> None:
    from service.json_output import write_batch

    write_batch(fd, iter(texts))


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants now (Linux /proc; 0 once it is gone)."""
    pages, pids = 0, [pid]
    while pids:
        current = pids.pop()
        try:
            pages += int(Path(f"/proc/{current}/statm").read_text().split()[1])
            pids += map(int, Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except (OSError, ValueError, IndexError):  # it ended meanwhile
            pass
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1, help="passed to coverage-criteria evaluate")
    parser.add_argument("--generated", action="store_true", help="generated cases, not the shared bench cases")
    parser.add_argument("--bytes-cases", type=int, default=2_000, help="cases for the bytes figures (0: none)")
    args = parser.parse_args()
    command = Path(sys.executable).parent / "coverage-criteria"
    payloads, source = bench_cases(args.cases, args.generated)
    with tempfile.TemporaryDirectory() as folder:
        cases, output = Path(folder) / "cases.json", Path(folder) / "results.json"
        cases.write_text(json.dumps(payloads))
        with output.open("wb") as stdout:
            started = time.perf_counter()
            child = subprocess.Popen([str(command), "evaluate", "--compact", "--workers", str(args.workers),
                                      str(cases)], stdout=stdout, stderr=subprocess.PIPE)
            peak = 0.0
            while child.poll() is None:
                peak = max(peak, tree_rss_mib(child.pid))
                time.sleep(0.05)
            seconds = time.perf_counter() - started
        if child.returncode != 0:
            sys.exit(f"evaluate failed ({child.returncode}): {child.stderr.read().decode()[:2000]}")
        with output.open("rb") as results, mmap.mmap(results.fileno(), 0, access=mmap.ACCESS_READ) as text:
            if not (text[:1] == b"[" and text[-2:] == b"]\n"):
                sys.exit("evaluate's output is not one JSON array")
            ids = re.findall(rb'"external_id": ?"BENCH-(\d+)"', text)
            outcomes: dict[str, int] = {}
            for outcome in re.findall(rb'"outcome": ?"(\w+)"', text):
                outcomes[outcome.decode()] = outcomes.get(outcome.decode(), 0) + 1
            size_mib = len(text) / 2**20
        output.unlink()
        bytes_figures = bytes_cost(payloads[:args.bytes_cases], Path(folder)) if args.bytes_cases else None
    if [int(i) for i in ids] != list(range(args.cases)) or sum(outcomes.values()) != args.cases:
        sys.exit(f"expected {args.cases} results in order, found {len(ids)} ids and {sum(outcomes.values())} outcomes")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    us_per_case = seconds / args.cases * 1e6
    print(json.dumps({
        "benchmark": "cli_batch",
        "cases": args.cases,
        "source": source,
        "workers": args.workers,
        "seconds": round(seconds, 2),
        "cases_per_second": round(args.cases / seconds),
        "us_per_case": round(us_per_case),
        "target_us_per_case": TARGET_US_PER_CASE,
        "us_per_case_over_target": round(us_per_case / TARGET_US_PER_CASE, 2),
        # CPU time of the command (and its workers): what it costs, whatever else ran meanwhile
        "cpu_us_per_case": round(cpu_seconds() / args.cases * 1e6),
        "cpu_user_us_per_case": round(usage.ru_utime / args.cases * 1e6),
        "cpu_system_us_per_case": round(usage.ru_stime / args.cases * 1e6),
        "peak_rss_mib": round(peak, 1),
        "peak_rss_largest_process_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "output_mib": round(size_mib, 1),
        "outcomes": outcomes,
        "bytes": bytes_figures,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]},
    }, indent=2))
    print(f"{us_per_case:.0f} µs a case end to end (target {TARGET_US_PER_CASE}: "
          f"{'yes' if us_per_case <= TARGET_US_PER_CASE else 'NO'}, {us_per_case / TARGET_US_PER_CASE:.2f} x), "
          f"{cpu_seconds() / args.cases * 1e6:.0f} µs of CPU", file=sys.stderr)


if __name__ == "__main__":
    main()
