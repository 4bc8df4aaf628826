import copy
import json
import shutil
from pathlib import Path

import pytest

from service.engine.evaluation import Evaluator

# the REST service's fixtures (tests/api_fixtures.py); skips that CI may not have (required_resources.py)
pytest_plugins = ["api_fixtures", "required_resources"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--long", action="store_true", help="run the long variants of the fuzz, fault and memory tests"
    )

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "rules" / "isass-2023-restorative-neurostimulation" / "1.0.0"
FIELDS_FILE = ROOT / "rules" / "fields.yaml"


def with_dictionary(rules_dir: Path) -> Path:
    """A rules folder made by a test holds the bundled field dictionary, as every rules folder must."""
    rules_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIELDS_FILE, rules_dir / "fields.yaml")
    return rules_dir

# The contract's example case (shared/contract.md): every criterion met, no trial flag.
FULL_CASE = {
    "external_id": "INTAKE-2026-000123",
    "policy": "isass-2023-restorative-neurostimulation",
    "service_date": "2026-12-01",
    "patient": {"age_years": 52, "bmi": 31.2},
    "low_back_pain": {
        "duration_months": 26,
        "mechanical": True,
        "axial_predominant": True,
        "predominant_pain_type": "nociceptive",
        "nrs": 7,
        "odi_percent": 44,
        "quality_of_life_severely_impaired": True,
        "eq5d_index": 0.43,
    },
    "conservative_care": {"medication_outcome": "failed", "physical_therapy_outcome": "failed", "duration_months": 14},
    "multifidus_dysfunction": {"prone_instability_test": "positive", "imaging": "atrophy_or_fatty_infiltration"},
    "surgery": {"spine_surgery_indicated": False, "prior_spine_surgery_at_or_below_t8": False},
    "device": {"able_to_operate": True, "fit_for_implant_surgery": True},
    "other_findings": {"scoliosis": False, "neurological_deficit": False, "stenosis_with_leg_pain": False, "scs_candidate": False},
    "diagnosis_codes": ["M54.50", "M62.85"],
}


@pytest.fixture(scope="session")
def evaluator() -> Evaluator:
    return Evaluator.from_rules_dir()


@pytest.fixture
def full_case() -> dict:
    return copy.deepcopy(FULL_CASE)


def statuses(result: dict) -> dict[str, str]:
    return {item["id"]: item["status"] for item in (*result["criteria"], *result["flags"])}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path
