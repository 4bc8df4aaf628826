"""The npm project in tests/js (cql-execution, cql-exec-fhir, lforms, pinned by its
package-lock.json), installed once per machine with the machine's npm (``npm ci``), and a runner
for generated ELM libraries in that CQL engine (tests/js/run_cql.js)."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent / "js"


def node_modules() -> Path:
    """tests/js/node_modules, installed by ``npm ci`` if absent (skips, saying why, without npm)."""
    modules = JS / "node_modules"
    if (modules / ".package-lock.json").exists():
        return modules
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("npm and node are needed for the CQL engine and LHC-Forms (Debian: apt-get install -y nodejs npm)")
    with open(JS / ".install.lock", "w") as lock:  # pytest-xdist workers: one install at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / ".package-lock.json").exists():
            run = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=JS,
                                 capture_output=True, text=True, timeout=600, check=False)
            if run.returncode != 0:
                pytest.fail(f"npm ci failed in {JS}:\n{run.stderr[-3000:]}")
    return modules


def run_cql(elm: dict[str, Any], value_sets: list[dict[str, Any]], defines: list[str],
            cases: list[tuple[dict[str, Any], str | None]]) -> list[dict[str, Any]]:
    """Each define's value for each (Bundle, service date) case, as cql-execution computes it."""
    node_modules()
    payload = {"elm": elm, "valueSets": value_sets, "defines": defines,
               "cases": [{"bundle": bundle, "serviceDate": day} for bundle, day in cases]}
    run = subprocess.run(["node", str(JS / "run_cql.js")], input=json.dumps(payload), capture_output=True,
                         text=True, timeout=300, check=False)
    result = json.loads(run.stdout) if run.stdout.strip() else {"error": run.stderr}
    if run.returncode != 0 or isinstance(result, dict):
        raise AssertionError(f"cql-execution failed: {result.get('error') if isinstance(result, dict) else run.stderr}")
    return result
