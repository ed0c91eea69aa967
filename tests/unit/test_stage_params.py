"""params.yaml as the stages read it: credentials are refused (params are
logged to MLflow and versioned), and the repository's own file has none."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tradingrl.params import load_params, secret_keys

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_credential_keys_are_found_at_any_depth():
    tree = {"source": "csv", "vendor": {"api_key": "x", "retries": 3},
            "feeds": [{"name": "a", "Token": "t"}], "token_budget_words": 1,
            "max_drawdown": 0.2, "keys": ["open", "close"]}
    assert secret_keys(tree, "ingest.") == [
        "ingest.vendor.api_key", "ingest.feeds.0.Token", "ingest.token_budget_words"]


def test_a_credential_in_params_is_refused_with_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"ingest": {"source": "yfinance",
                                               "yfinance": {"API-KEY": "abc123"}}}))
    with pytest.raises(ValueError) as err:
        load_params("ingest", path)
    message = str(err.value)
    assert message.startswith("params.yaml: ingest.yfinance.API-KEY looks like a credential")
    assert "abc123" not in message and "\n" not in message


def test_the_repository_params_have_no_credentials():
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert secret_keys(params) == []
    for section in params:
        load_params(section, REPO_ROOT / "params.yaml")


def test_optuna_storage_comes_from_the_environment_or_params_without_a_password(
        tmp_path, monkeypatch):
    from tradingrl.models.search import STORAGE_ENV, SearchSettings

    def url(storage):
        return SearchSettings.from_params({"storage": storage}).storage_url(tmp_path / "o.db")

    monkeypatch.delenv(STORAGE_ENV, raising=False)
    assert url(None) == f"sqlite:///{tmp_path / 'o.db'}"
    assert url("postgresql://optuna@db/studies") == "postgresql://optuna@db/studies"
    monkeypatch.setenv(STORAGE_ENV, "postgresql://optuna:s3cret@db/studies")
    assert url(None) == "postgresql://optuna:s3cret@db/studies"
    with pytest.raises(ValueError, match="holds a password") as err:
        url("postgresql://optuna:s3cret@db/studies")
    assert "s3cret" not in str(err.value)
