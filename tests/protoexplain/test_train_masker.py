"""``protoexplain train-masker``: masker.pt is written, loaded and resumed exactly; bad
settings and a missing masker are one-line errors; the benchmark reports its cost."""

import json
import math

import pytest
import torch

from protoexplain.cli import main
from protoexplain.config import ConfigError
from protoexplain.run_dir import load_run
from protoexplain.train_masker import (
    MASKER_NAME,
    add_training_cost,
    load_masker,
    masker_config,
    train_masker,
)
from tests.protoexplain.tiny_runs import pushed_run, write_run_dir

STEPS = ["--set", "training.steps=4", "--set", "training.images_per_step=4",
         "--set", "training.checkpoint_every=2", "--set", "predictor.channels=4"]


@pytest.fixture
def run_dir(tmp_path):
    cheap_hdm = "localization.method_options={hdm: {benchmark_steps: 1, auxiliary_steps: 1}}"
    return write_run_dir(pushed_run(tmp_path / "run", cheap_hdm))


def test_masker_is_saved_as_state_dicts_and_loads_for_the_runs_model(run_dir, capsys):
    assert main(["train-masker", str(run_dir), *STEPS, "--no-progress"]) == 0
    assert "model passes" in capsys.readouterr().out
    saved = torch.load(run_dir / MASKER_NAME, weights_only=True)  # nothing pickled
    assert saved["step"] == 4 and saved["config"]["training"]["steps"] == 4
    assert saved["record"]["forward_images"] > 0 and saved["record"]["backward_images"] > 0
    run = load_run(run_dir)
    predictor, record = load_masker(run_dir, run.model, "cpu")
    assert record == saved["record"]
    for name, tensor in predictor.state_dict().items():
        assert torch.equal(tensor, saved["predictor"][name])


def test_resume_continues_exactly_where_a_shorter_training_stopped(tmp_path):
    straight = load_run(write_run_dir(pushed_run(tmp_path / "straight")))
    train_masker(straight, ["training.steps=4", "training.images_per_step=4",
                            "predictor.channels=4"], progress=False)
    halted = load_run(write_run_dir(pushed_run(tmp_path / "halted")))
    train_masker(halted, ["training.steps=2", "training.images_per_step=4",
                          "predictor.channels=4"], progress=False)
    record = train_masker(halted, ["training.steps=4"], resume=True, progress=False)
    assert [row["step"] for row in record["losses"]] == [2, 4]
    first, second = (torch.load(run.path / MASKER_NAME, weights_only=True)
                     for run in (straight, halted))
    for name, tensor in first["predictor"].items():
        assert torch.equal(tensor, second["predictor"][name]), name
    assert first["record"]["forward_images"] == second["record"]["forward_images"]


def test_an_existing_masker_is_neither_overwritten_nor_changed_on_resume(run_dir, capsys):
    assert main(["train-masker", str(run_dir), *STEPS, "--no-progress"]) == 0
    before = (run_dir / MASKER_NAME).read_bytes()
    assert main(["train-masker", str(run_dir), *STEPS]) == 2
    assert "exists: pass --resume" in capsys.readouterr().err
    assert main(["train-masker", str(run_dir), "--resume", "--set", "training.lr=0.1"]) == 2
    error = capsys.readouterr().err
    assert "'training.lr' would change" in error and len(error.strip().splitlines()) == 1
    assert (run_dir / MASKER_NAME).read_bytes() == before
    assert main(["train-masker", str(run_dir), *STEPS, "--overwrite", "--no-progress"]) == 0


@pytest.mark.parametrize(("item", "message"), [
    ("training.stepz=3", "unknown config key 'training.stepz'"),
    ("predictor.conditioning=class", "'predictor'"),
    ("training.rare_share=2", "rare_share must lie in"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(run_dir, capsys, item, message):
    assert main(["train-masker", str(run_dir), "--set", item]) == 2
    error = capsys.readouterr().err
    assert message in error and len(error.strip().splitlines()) == 1
    assert not (run_dir / MASKER_NAME).exists()


def test_settings_tree_has_the_predictor_and_training_defaults():
    config = masker_config(["predictor.conditioning=vector", "training.steps=7"])
    assert config.predictor.conditioning == "vector" and config.training.steps == 7
    assert config.training.area_weight == 3.0
    with pytest.raises(ConfigError, match="did you mean 'steps'"):
        masker_config(["training.step=7"])


def test_benchmark_without_masker_names_the_command_that_trains_it(run_dir, capsys):
    assert main(["benchmark", str(run_dir), "--methods", "upsample,amortized"]) == 2
    error = capsys.readouterr().err
    assert f"protoexplain train-masker {run_dir}" in error


@pytest.mark.slow
def test_benchmark_reports_cost_and_break_even_against_hdm(run_dir, capsys):
    assert main(["train-masker", str(run_dir), *STEPS, "--no-progress"]) == 0
    assert main(["benchmark", str(run_dir), "--methods", "upsample,amortized,hdm",
                 "--images-per-prototype", "1", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "break_even_pairs" in table and "masker_training_seconds" in table
    row = json.loads((run_dir / "benchmark.json").read_text())["amortized"]
    assert row["forward_passes_per_pair"] <= 1 and row["backward_passes_per_pair"] == 0
    assert row["masker_training_passes"] > 0


def test_break_even_is_training_cost_over_saving_per_pair():
    results = {"amortized": {"seconds_per_pair": 0.01, "forward_passes_per_pair": 1.0,
                             "backward_passes_per_pair": 0.0},
               "hdm": {"seconds_per_pair": 0.51, "forward_passes_per_pair": 407.0,
                       "backward_passes_per_pair": 400.0}}
    add_training_cost(results, {"seconds": 100.0, "forward_images": 700,
                                "backward_images": 106})
    row = results["amortized"]
    assert row["masker_training_seconds"] == 100.0 and row["masker_training_passes"] == 806
    assert row["break_even_pairs"] == pytest.approx(200.0)
    assert row["break_even_pairs_by_passes"] == pytest.approx(1.0)
    alone = {"amortized": {"seconds_per_pair": 0.01, "forward_passes_per_pair": 1.0,
                           "backward_passes_per_pair": 0.0}}
    add_training_cost(alone, {"seconds": 1.0, "forward_images": 1, "backward_images": 1})
    assert "break_even_pairs" not in alone["amortized"]
    slower = {"amortized": {**results["amortized"], "seconds_per_pair": 1.0},
              "hdm": results["hdm"]}
    add_training_cost(slower, {"seconds": 1.0, "forward_images": 1, "backward_images": 1})
    assert math.isnan(slower["amortized"]["break_even_pairs"])


def test_every_command_that_localizes_gets_the_runs_masker_for_amortized(run_dir):
    from protoexplain.pipeline import method_options
    from protoexplain.report.build import report_methods
    from prototypes.mask_predictor import MaskPredictor

    assert main(["train-masker", str(run_dir), *STEPS, "--no-progress"]) == 0
    run = load_run(run_dir)
    for options in (method_options(run.config, ["upsample", "amortized"], run),
                    report_methods(run, ["upsample", "amortized"])):
        assert isinstance(options["amortized"]["masker"], MaskPredictor)
        assert options["upsample"] == {}
