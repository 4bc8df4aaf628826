"""Resident memory of one process over many evaluations; print JSON figures.

    python bench/memory.py [--evaluations 1000000] [--warmup 10000] [--samples 20] [--max-growth-mib M]

One Evaluator evaluates the shared bench cases (../shared/bench/cases-20000.json.gz, or generated
ones where absent: ``bench_cases`` of bench/cli_batch.py), cycled, each evaluation with its own
external_id, so nothing keyed on the case can hide a leak by repeating, and drops each result. Resident memory (``/proc/self/statm``) and the number of objects the garbage
collector tracks are sampled at start, after the warm-up, at intervals and at the end.
``growth_after_warmup_mib`` is what a per-case leak (sids never deleted, results or facts kept
in a cache) would make grow with the number of evaluations; with ``--max-growth-mib`` the exit
status is 1 when it is exceeded (tests/test_memory.py uses this).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_batch import bench_cases  # noqa: E402  (bench/ is a folder of scripts, not a package)

from service.engine.evaluation import Evaluator  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """This process's resident set size now (``/proc/self/statm``; the peak where /proc is missing)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE / 2**20
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=1_000_000)
    parser.add_argument("--warmup", type=int, default=10_000, help="evaluations before the baseline sample")
    parser.add_argument("--samples", type=int, default=20, help="samples after the warm-up")
    parser.add_argument("--distinct", type=int, default=20_000, help="cases to cycle through")
    parser.add_argument("--max-growth-mib", type=float, help="exit 1 if memory grows more after warm-up")
    args = parser.parse_args()
    if not 0 < args.warmup < args.evaluations:
        parser.error("--warmup must be above 0 and below --evaluations")

    evaluator = Evaluator.from_rules_dir()
    cases, _ = bench_cases(args.distinct)
    every = max(1, (args.evaluations - args.warmup) // args.samples)
    samples = []

    def sample(done: int) -> dict:
        gc.collect()
        point = {"evaluations": done, "rss_mib": round(rss_mib(), 1), "gc_objects": len(gc.get_objects())}
        samples.append(point)
        return point

    start = sample(0)
    started = time.perf_counter()
    for done in range(1, args.evaluations + 1):
        case = cases[done % len(cases)]
        evaluator.evaluate({**case, "external_id": f"MEM-{done:08d}"})
        if done == args.warmup:
            baseline = sample(done)
        elif done > args.warmup and ((done - args.warmup) % every == 0 or done == args.evaluations):
            sample(done)
    seconds = time.perf_counter() - started
    end = samples[-1]

    growth = round(end["rss_mib"] - baseline["rss_mib"], 1)
    after_warmup = args.evaluations - args.warmup
    figures = {
        "benchmark": "memory",
        "evaluations": args.evaluations,
        "warmup": args.warmup,
        "seconds": round(seconds, 1),
        "evaluations_per_second": round(args.evaluations / seconds),
        "rss_start_mib": start["rss_mib"],
        "rss_after_warmup_mib": baseline["rss_mib"],
        "rss_end_mib": end["rss_mib"],
        "rss_max_sampled_mib": max(s["rss_mib"] for s in samples),
        "growth_after_warmup_mib": growth,
        "growth_bytes_per_evaluation": round(growth * 2**20 / after_warmup, 2),
        "gc_objects_growth_after_warmup": end["gc_objects"] - baseline["gc_objects"],
        "max_growth_mib": args.max_growth_mib,
        "samples": samples,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }
    print(json.dumps(figures, indent=2))
    if args.max_growth_mib is not None and growth > args.max_growth_mib:
        print(f"memory grew {growth} MiB after the warm-up, more than {args.max_growth_mib} MiB", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
