"""Memory stays flat over many evaluations in one process (bench/memory.py, run in a subprocess).

After the warm-up, neither resident memory nor the number of objects the garbage collector tracks
may grow with the number of evaluations, as a per-case leak would make them (durable-rules sids
never deleted, results, facts or fired rules kept in some cache). The RSS bound is generous for
allocator noise and far below any such leak: keeping each result costs tens of kilobytes a case.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

MEMORY_BENCH = ROOT / "bench" / "memory.py"


def memory_figures(evaluations: int, warmup: int, max_growth_mib: float, timeout: float) -> dict:
    done = subprocess.run(
        [sys.executable, str(MEMORY_BENCH), "--evaluations", str(evaluations), "--warmup", str(warmup),
         "--samples", "5", "--max-growth-mib", str(max_growth_mib)],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_memory_is_flat_over_20000_evaluations():
    figures = memory_figures(20_000, warmup=2_000, max_growth_mib=16, timeout=900)
    assert figures["growth_after_warmup_mib"] <= 16
    assert figures["gc_objects_growth_after_warmup"] < 1_000


def test_memory_is_flat_over_a_million_evaluations(request):
    if not request.config.getoption("--long"):
        pytest.skip("long variant (about 10 minutes): run with --long")
    figures = memory_figures(1_000_000, warmup=10_000, max_growth_mib=32, timeout=4 * 3600)
    assert figures["growth_after_warmup_mib"] <= 32
    assert figures["gc_objects_growth_after_warmup"] < 1_000


def test_the_check_catches_a_per_case_leak():
    # The same check on an evaluator that keeps every result, as a careless cache would.
    code = textwrap.dedent(f"""
        import runpy, sys
        from service.engine.evaluation import Evaluator

        kept, evaluate = [], Evaluator.evaluate
        Evaluator.evaluate = lambda self, payload: kept.append(evaluate(self, payload))
        sys.argv = ["memory.py", "--evaluations", "4000", "--warmup", "500", "--max-growth-mib", "16"]
        runpy.run_path({str(MEMORY_BENCH)!r}, run_name="__main__")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "memory grew" in done.stderr
    assert json.loads(done.stdout)["gc_objects_growth_after_warmup"] >= 3_500
