"""Configs are found by path or by the name of a shipped config, from any directory."""

from pathlib import Path

import pytest

from protoexplain.config import load_config
from protoexplain.config_files import find_config, shipped_configs
from protoexplain.config_schema import ConfigError

CONFIGS = Path(__file__).parents[2] / "configs"


def test_shipped_configs_are_the_yaml_files_of_the_configs_folder():
    assert list(shipped_configs()) == sorted(path.stem for path in CONFIGS.glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads_by_name(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    config = load_config(name)
    assert config == load_config(CONFIGS / f"{name}.yaml")


@pytest.mark.parametrize("text", ["synthetic_protopnet", "synthetic_protopnet.yaml",
                                  "configs/synthetic_protopnet.yaml"])
def test_a_shipped_config_is_found_by_name_or_by_its_checkout_path_anywhere(
        text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    found = find_config(text)
    assert found.name == "synthetic_protopnet"
    assert found.source == "shipped config synthetic_protopnet.yaml"
    assert found.text == (CONFIGS / "synthetic_protopnet.yaml").read_text()


def test_an_existing_file_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic_protopnet.yaml").write_text("seed: 7\n")
    found = find_config("synthetic_protopnet.yaml")
    assert (found.source, found.text) == ("synthetic_protopnet.yaml", "seed: 7\n")
    assert load_config("synthetic_protopnet.yaml").seed == 7


def test_an_unknown_config_is_an_error_that_lists_the_shipped_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        find_config("synthetic_protopnt")
    message = str(error.value)
    assert "config file synthetic_protopnt does not exist" in message
    assert "'synthetic_protopnt' is not a shipped config" in message
    assert "synthetic_protopnet" in message and "\n" not in message


def test_a_missing_file_in_another_folder_is_not_taken_for_a_shipped_config(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(tmp_path / "elsewhere" / "synthetic_protopnet.yaml")


def test_a_folder_is_not_a_config(tmp_path):
    with pytest.raises(ConfigError, match="is not a file"):
        find_config(tmp_path)


def test_study_designs_are_found_by_name_and_are_not_training_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ folder here
    studies = sorted(path.stem for path in (CONFIGS / "studies").glob("*.yaml"))
    assert list(shipped_configs("studies")) == studies
    assert not set(studies) & set(shipped_configs())
    for text in ("cbr_default", "cbr_default.yaml", "configs/studies/cbr_default.yaml"):
        found = find_config(text, folder="studies")
        assert found.source == "shipped config studies/cbr_default.yaml"
        assert found.text == (CONFIGS / "studies" / "cbr_default.yaml").read_text()
    with pytest.raises(ConfigError, match="not a shipped config"):
        find_config("synthetic_protopnet", folder="studies")
