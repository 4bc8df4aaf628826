"""Time ``coverage-criteria evaluate`` on a JSON array of generated cases; print JSON figures.

    python bench/cli_batch.py [--cases 20000] [--workers 1]

Cases vary around every threshold and drop fields at random (seeded), so every criterion sees
met, not-met and missing answers. The command's output goes to a temporary file (100,000 results
are ~2 GB of JSON); its results are counted, and checked to be in order, by scanning that file.
``us_per_case`` is wall time end to end (start-up included), ``cpu_us_per_case`` the command's
CPU time (workers included). ``peak_rss_mib`` is the peak total resident memory of the command and its worker processes,
sampled every 50 ms; ``peak_rss_largest_process_mib`` is the kernel's exact peak of the largest one.
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    command = Path(sys.executable).parent / "coverage-criteria"
    with tempfile.TemporaryDirectory() as folder:
        cases, output = Path(folder) / "cases.json", Path(folder) / "results.json"
        cases.write_text(json.dumps(generate(args.cases)))
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
    if [int(i) for i in ids] != list(range(args.cases)) or sum(outcomes.values()) != args.cases:
        sys.exit(f"expected {args.cases} results in order, found {len(ids)} ids and {sum(outcomes.values())} outcomes")
    print(json.dumps({
        "benchmark": "cli_batch",
        "cases": args.cases,
        "workers": args.workers,
        "seconds": round(seconds, 2),
        "cases_per_second": round(args.cases / seconds),
        "us_per_case": round(seconds / args.cases * 1e6),
        # CPU time of the command (and its workers): what it costs, whatever else ran meanwhile
        "cpu_us_per_case": round(cpu_seconds() / args.cases * 1e6),
        "peak_rss_mib": round(peak, 1),
        "peak_rss_largest_process_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "output_mib": round(size_mib, 1),
        "outcomes": outcomes,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
