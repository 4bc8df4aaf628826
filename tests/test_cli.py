"""The installed ``coverage-criteria`` command, run as a user runs it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import FULL_CASE, POLICY_DIR, with_dictionary, write_json

COMMAND = [sys.executable, "-m", "service.cli"]


def run(*args: str, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], input=stdin, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "coverage-criteria"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "evaluate" in result.stdout


def test_evaluate_one_case_file(tmp_path):
    result = run("evaluate", str(write_json(tmp_path / "case.json", FULL_CASE)))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert output["external_id"] == FULL_CASE["external_id"]
    assert output["summary"]["outcome"] == "all_criteria_met"


def test_evaluate_an_array_in_order_from_stdin():
    cases = [dict(FULL_CASE, external_id=f"c{i}", patient={"age_years": 15 + i}) for i in range(5)]
    result = run("evaluate", "-", "--compact", stdin=json.dumps(cases))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert [r["external_id"] for r in output] == ["c0", "c1", "c2", "c3", "c4"]
    assert [r["criteria"][0]["status"] for r in output] == ["not_met"] * 3 + ["met"] * 2
    assert len(result.stdout.strip().splitlines()) == 1


def test_worker_processes_give_the_same_results_in_the_same_order(tmp_path):
    undated = {k: v for k, v in FULL_CASE.items() if k != "service_date"}  # evaluated for today
    cases = [dict(FULL_CASE if i % 2 else undated, external_id=f"c{i}", patient={"age_years": 10 + i % 80})
             for i in range(150)]
    path = write_json(tmp_path / "batch.json", cases)
    alone, workers = (run("evaluate", str(path), "--compact", "--workers", n) for n in ("1", "3"))
    assert alone.returncode == workers.returncode == 0, workers.stderr

    def findings(stdout: str) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("evaluation_id", "evaluated_at")} for r in json.loads(stdout)]

    assert findings(workers.stdout) == findings(alone.stdout)
    assert [r["external_id"] for r in json.loads(workers.stdout)] == [f"c{i}" for i in range(150)]


def test_bad_input_exits_2_naming_each_field_and_prints_no_result(tmp_path):
    bad = dict(FULL_CASE, patient={"age_years": "52"})
    result = run("evaluate", str(write_json(tmp_path / "bad.json", bad)))
    assert result.returncode == 2 and result.stdout == ""
    assert json.loads(result.stderr)["errors"] == [
        {"field": "patient.age_years", "message": "Input should be a valid integer", "type": "int_type"}]


def test_a_bad_case_in_an_array_is_named_by_its_position_and_nothing_is_evaluated(tmp_path):
    cases = [FULL_CASE, dict(FULL_CASE, low_back_pain={"nrs": 12}), {"patient": {}}]
    result = run("evaluate", str(write_json(tmp_path / "batch.json", cases)))
    assert result.returncode == 2 and result.stdout == ""
    fields = [e["field"] for e in json.loads(result.stderr)["errors"]]
    assert fields == ["[1].low_back_pain.nrs", "[2].external_id"]


def test_unreadable_input_exits_2(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    broken = run("evaluate", str(tmp_path / "broken.json"))
    absent = run("evaluate", str(tmp_path / "absent.json"))
    assert broken.returncode == absent.returncode == 2
    assert json.loads(broken.stderr)["errors"][0]["type"] == "json_invalid"
    assert json.loads(absent.stderr)["errors"][0]["type"] == "read_error"


def test_policies_lists_ids_and_versions():
    listing = run("policies")
    assert listing.returncode == 0
    assert "isass-2023-restorative-neurostimulation  (default)" in listing.stdout
    assert "1.0.0  draft  in force from 2023-10-01" in listing.stdout
    as_json = json.loads(run("policies", "--json").stdout)
    assert as_json[0]["versions"][0]["version"] == "1.0.0"


def test_rules_check_passes_on_the_bundled_rules():
    result = run("rules", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "13 criteria, 7 flags" in result.stdout and "golden cases pass" in result.stdout


def copy_rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules" / "isass-2023-restorative-neurostimulation" / "1.0.0"
    shutil.copytree(POLICY_DIR, folder)
    with_dictionary(tmp_path / "rules")
    return folder


def test_rules_check_exits_1_when_a_golden_case_fails(tmp_path):
    folder = copy_rules(tmp_path)
    policy = yaml.safe_load((folder / "policy.yaml").read_text())
    policy["criteria"][3]["met_when"]["at_least"] = 7  # NRS threshold edited, golden cases not updated
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy))
    result = run("rules", "check", str(tmp_path / "rules"))
    assert result.returncode == 1
    assert "FAIL NRS 6 meets the threshold: ISASS-RN-04 is not_met, expected met" in result.stdout


def test_rules_check_exits_2_naming_file_and_criterion_of_a_broken_rule(tmp_path):
    folder = copy_rules(tmp_path)
    text = (folder / "policy.yaml").read_text()
    (folder / "policy.yaml").write_text(text.replace("field: device.able_to_operate", "field: device.able"))
    result = run("rules", "check", str(tmp_path / "rules"))
    assert result.returncode == 2
    assert f"{folder / 'policy.yaml'}: ISASS-RN-12: met_when: unknown case field 'device.able'" in result.stderr


def test_rules_dir_from_the_environment(tmp_path):
    folder = copy_rules(tmp_path)
    (folder / "golden.yaml").unlink()
    result = run("rules", "check", env={"COVERAGE_CRITERIA_RULES_DIR": str(tmp_path / "rules")})
    assert result.returncode == 2 and "golden.yaml: missing" in result.stderr


def test_a_batch_is_written_whole_through_a_pipe_many_results_a_system_call():
    import threading

    from service.json_output import _WRITE_AT_ONCE, write_batch

    for count in (0, 1, 3 * _WRITE_AT_ONCE + 1):
        texts = [json.dumps({"n": i, "pad": "x" * (i * 997 % 70_000)}).encode() for i in range(count)]
        reading, writing = os.pipe()  # a pipe holds 64 kB: the writer waits on the reader
        received = bytearray()

        def read_all() -> None:
            while chunk := os.read(reading, 1 << 20):
                received.extend(chunk)

        reader = threading.Thread(target=read_all)
        reader.start()
        write_batch(writing, iter(texts))
        os.close(writing)
        reader.join()
        os.close(reading)
        assert bytes(received) == b"[" + b",".join(texts) + b"]\n"
        assert [item["n"] for item in json.loads(received)] == list(range(count))
