import pytest

from service.settings import DEFAULT_MAX_BODY_BYTES, Settings


def test_defaults_put_a_sqlite_database_in_a_data_folder_that_is_created(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env({})

    assert settings.data_dir == tmp_path / "data"
    assert settings.data_dir.is_dir()
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'coverage-criteria.db'}"
    assert settings.rules_dir is None
    assert settings.max_body_bytes == DEFAULT_MAX_BODY_BYTES == 1024 * 1024


def test_environment_variables_override_the_defaults(tmp_path):
    settings = Settings.from_env(
        {
            "COVERAGE_CRITERIA_DATA_DIR": str(tmp_path / "state"),
            "COVERAGE_CRITERIA_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/coverage",
            "COVERAGE_CRITERIA_RULES_DIR": str(tmp_path / "rules"),
            "COVERAGE_CRITERIA_MAX_BODY_BYTES": "2048",
        }
    )

    assert settings == Settings(
        data_dir=tmp_path / "state",
        database_url="postgresql://postgres@127.0.0.1:5432/coverage",
        rules_dir=tmp_path / "rules",
        max_body_bytes=2048,
    )


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1.5"])
def test_a_body_limit_that_is_not_a_positive_whole_number_is_refused(tmp_path, value):
    environ = {"COVERAGE_CRITERIA_DATA_DIR": str(tmp_path), "COVERAGE_CRITERIA_MAX_BODY_BYTES": value}

    with pytest.raises(ValueError, match="COVERAGE_CRITERIA_MAX_BODY_BYTES"):
        Settings.from_env(environ)
