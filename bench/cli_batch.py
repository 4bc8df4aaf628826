"""Time ``coverage-criteria evaluate`` on a JSON array of generated cases; print JSON figures.

    python bench/cli_batch.py [--cases 20000]

Cases vary around every threshold and drop fields at random (seeded), so every criterion sees
met, not-met and missing answers. Peak memory is the child's maximum resident set size.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000)
    args = parser.parse_args()
    command = Path(sys.executable).parent / "coverage-criteria"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cases.json"
        path.write_text(json.dumps(generate(args.cases)))
        started = time.perf_counter()
        done = subprocess.run([str(command), "evaluate", "--compact", str(path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"evaluate failed ({done.returncode}): {done.stderr.decode()[:2000]}")
    results = json.loads(done.stdout)
    assert len(results) == args.cases
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result["summary"]["outcome"]] = outcomes.get(result["summary"]["outcome"], 0) + 1
    print(json.dumps({
        "benchmark": "cli_batch",
        "cases": args.cases,
        "seconds": round(seconds, 2),
        "cases_per_second": round(args.cases / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "outcomes": outcomes,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
    }, indent=2))


if __name__ == "__main__":
    main()
