"""The determinism study: comparing checkpoints, the commands it runs, and a tiny study end
to end (on the CPU every training of a seed must be bit-equal)."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import determinism  # noqa: E402

from tests.protoexplain.tiny_runs import tiny_run  # noqa: E402


def test_weight_difference_counts_differing_tensors_and_the_largest_float_gap():
    first = {"a": torch.zeros(3), "b": torch.ones(2, 2), "steps": torch.tensor([4])}
    assert determinism.weight_difference(first, {k: v.clone() for k, v in first.items()}) == {
        "bit_equal": True, "tensors_differing": 0, "max_abs_difference": 0.0}

    other = {"a": torch.tensor([0.0, -0.5, 0.25]), "b": torch.ones(2, 2),
             "steps": torch.tensor([5])}
    assert determinism.weight_difference(first, other) == {
        "bit_equal": False, "tensors_differing": 2, "max_abs_difference": 0.5}

    # a dtype change with the same values is not bit-equal
    assert not determinism.weight_difference(first, {**first, "b": first["b"].double()})[
        "bit_equal"]


def test_mismatched_checkpoints_are_not_equal_and_have_no_difference():
    first = {"a": torch.zeros(3)}
    for other in ({"a": torch.zeros(4)}, {"a": torch.zeros(3), "extra": torch.zeros(1)}):
        result = determinism.weight_difference(first, other)
        assert not result["bit_equal"] and math.isnan(result["max_abs_difference"])
        assert result["tensors_differing"] == 1  # the reshaped one, or the extra one


def test_the_setting_is_the_last_override_so_it_wins(tmp_path):
    command = determinism.train_command(tmp_path / "c.yaml", tmp_path / "run", "off",
                                        ["deterministic=true", "seed=3"])
    assert command[command.index("train") + 1] == str(tmp_path / "c.yaml")
    sets = [command[i + 1] for i, part in enumerate(command) if part == "--set"]
    assert sets == ["deterministic=true", "seed=3", "deterministic=false"]


@pytest.mark.parametrize(("arguments", "message"), [
    (["--settings", "on,maybe"], "--settings takes on and off"),
    (["--settings", "on,on"], "--settings takes on and off"),
    (["--repeats", "1"], "--repeats must be at least 2"),
])
def test_bad_arguments_are_refused_before_any_training(tmp_path, capsys, arguments, message):
    config = tmp_path / "c.yaml"
    config.write_text("seed: 0\n")
    with pytest.raises(SystemExit) as stop:
        determinism.main([str(config), *arguments, "--out", str(tmp_path / "out" / "x")])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_on_the_cpu_every_training_of_a_seed_is_bit_equal(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"seed": 0}))
    overrides = [
        *tiny_run(epochs=2, push_every=1, prototypes_per_class=1),
        "data.options={image_size: 32, num_classes: 2, num_samples: 16, clutter: 0}",
        "training.pretrain_epochs=0",
        "localization.push_method=upsample",
        "localization.evaluation_methods=[upsample, hdm]",
        "localization.images_per_prototype=1",
    ]
    out = tmp_path / "determinism"
    determinism.main([str(config), "--settings", "on", "--repeats", "2", "--out", str(out),
                      *(part for item in overrides for part in ("--set", item))])

    record = json.loads(out.with_suffix(".json").read_text())
    runs = record["runs"]
    assert list(runs) == ["on"] and len(runs["on"]) == 2
    for run in runs["on"]:
        assert run["device"] == "cpu" and run["test"].startswith("test accuracy")
        assert run["bit_equal"] and run["tensors_differing"] == 0
        assert run["max_abs_difference"] == 0.0 and run["max_result_difference"] == 0.0
    table = out.with_suffix(".md").read_text()
    assert table.count("| reference |") == 1 and table.count("| yes |") == 1
    assert "--set training.pretrain_epochs=0" in table
