"""The consistency bound: relied-on parts, the union of their Huang boxes' hits, the one-part
picks (a cue's choice among relied-on parts, the transplant into the push image; the picked
part's box is scored by protoexplain.metrics.parts.part_box_hits, tested there), and a tiny
run end to end (ratio 1 is the benchmark's oracle; a lower ratio never lowers the bound; a
pick never beats the bound at its ratio)."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "research"), str(ROOT / "benchmarks")]
import consistency_bound  # noqa: E402
from study_io import load_run_pairs  # noqa: E402

from protoexplain.config import load_config  # noqa: E402
from protoexplain.metrics.localization import evaluate_localization  # noqa: E402
from protoexplain.pipeline import metric_settings, train_and_report  # noqa: E402
from tests.protoexplain.tiny_runs import tiny_run  # noqa: E402


def test_relied_on_parts_are_visible_positive_and_near_the_largest_score():
    scores = torch.tensor([[0.8, 0.5, 0.9, -0.1],
                           [-0.2, -0.1, 0.0, -0.3]])
    visible = torch.tensor([[True, True, False, True],
                            [True, True, True, True]])
    # row 0: part 2 is hidden, so the largest visible score is 0.8
    assert consistency_bound.relied_on_parts(scores, visible, 1.0).tolist() == [
        [True, False, False, False], [False, False, False, False]]
    assert consistency_bound.relied_on_parts(scores, visible, 0.6).tolist() == [
        [True, True, False, False], [False, False, False, False]]


def test_union_of_hits_takes_every_box_around_a_relied_on_keypoint():
    # keypoints (x, y, visible) on one row: parts 0 and 1 are 5 px apart, part 2 far away,
    # part 3 next to part 2 but not visible
    keypoints = torch.tensor([[[10.0, 10.0, 1.0], [15.0, 10.0, 1.0], [40.0, 10.0, 1.0],
                               [42.0, 10.0, 0.0]]]).repeat(3, 1, 1)
    relied = torch.tensor([[False, False, True, False],
                           [True, False, True, False],
                           [False, False, False, False]])
    hits = consistency_bound.union_of_hits(relied, keypoints, (6.0, 6.0))
    assert hits.tolist() == [[False, False, True, False],
                             [True, True, True, False],
                             [False, False, False, False]]


def test_a_pick_takes_the_relied_on_part_with_the_highest_cue():
    relied = torch.tensor([[True, False, True, False],
                           [False, False, False, False],
                           [False, True, True, True]])
    cue = torch.tensor([[0.1, 9.0, 0.5, 0.0],  # part 1 has the highest cue but is not relied on
                        [1.0, 2.0, 3.0, 4.0],
                        [0.0, 0.7, 0.7, 0.2]])  # a tie: the first part
    parts = consistency_bound.pick_relied_on_part(relied, cue)
    assert parts.tolist() == [2, -1, 1]


def test_transplant_moves_the_test_square_onto_the_source_point_and_nothing_else():
    test = torch.zeros(2, 3, 12, 12)
    test[0, :, 2, 3] = 1.0  # the first test image's candidate pixel
    test[1, :, 9, 9] = 0.5
    source = torch.full((2, 3, 12, 12), 0.25)
    moved = consistency_bound.transplant(test, source, torch.tensor([[2, 3], [9, 9]]),
                                         torch.tensor([[6, 6], [1, 1]]), half_size=1.0)
    # the 3x3 square around the target point now holds the test pixels around the candidate
    assert moved[0, :, 6, 6].tolist() == [1.0, 1.0, 1.0]
    assert moved[0, :, 5:8, 5:8].sum() == 3.0
    assert moved[1, :, 1, 1].tolist() == [0.5, 0.5, 0.5]
    assert moved[1, :, 0:3, 0:3].sum() == 1.5
    outside = torch.ones(12, 12, dtype=torch.bool)
    outside[5:8, 5:8] = False
    assert (moved[0][:, outside] == 0.25).all()
    assert consistency_bound.keypoint_pixels(torch.tensor([[3.7, 2.2, 1.0]])).tolist() == [[2, 3]]


@pytest.mark.slow
def test_on_a_tiny_run_ratio_one_is_the_oracle_and_lower_ratios_bound_higher(tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(None, [
        *tiny_run(epochs=2, push_every=1, prototypes_per_class=2),
        "data.options={image_size: 32, num_classes: 2, num_samples: 32, clutter: 0}",
        "training.pretrain_epochs=0",
        "localization.push_method=upsample",
        "localization.evaluation_methods=[upsample]",
        "localization.images_per_prototype=1",
        "localization.method_options={mdm: {steps: 4}}",
    ])
    train_and_report(config, run_dir, progress=False)
    out = tmp_path / "bound"
    consistency_bound.main([str(run_dir), "--ratios", "1,0.5,0.01", "--methods", "mdm",
                            "--images-per-prototype", "2", "--out", str(out)])

    record = json.loads(out.with_suffix(".json").read_text())
    rows = record["runs"][str(run_dir)]
    values = {name: row["consistency"] for name, row in rows.items()}
    assert values["bound, ratio 1"] == values["oracle_consistency (model)"] > 0
    assert values["bound, ratio 1"] <= values["bound, ratio 0.5"] <= values["bound, ratio 0.01"]
    assert 0.0 <= values["upsample"] <= 1.0
    for rule in ("preservation", "source part", "transplant"):  # one part among the relied-on
        assert 0.0 <= values[f"pick at ratio 0.5: {rule}"] <= values["bound, ratio 0.5"]
    table = out.with_suffix(".md").read_text()
    assert "| bound, ratio 0.5 |" in table and "| n/a |" in table  # one run: no spread

    # the method's own peak scores as the benchmark scores the method (the run's options)
    loaded = load_run_pairs(run_dir, 2)
    settings = metric_settings(loaded.run.config, stability=False, sanity=False,
                               deletion_insertion=False)
    benchmarked = evaluate_localization(loaded.model, loaded.pairs, "mdm", {"steps": 4},
                                        settings=settings, progress=False)
    assert values["mdm: its peak"] == pytest.approx(benchmarked["consistency"])
    for row in ("transplant among its candidates", "its candidate on the source part"):
        assert 0.0 <= values[f"mdm: {row}"] <= 1.0
    assert 0.0 <= record["candidates_reach_source_part"][str(run_dir)]["mdm"] <= 1.0
    assert "Pairs where one of mdm's candidates reaches" in table


def test_bad_ratios_and_untrained_runs_are_refused(tmp_path, capsys):
    for arguments, message in ((["--ratios", "1,0"], "--ratios takes numbers in (0, 1]"),
                               (["--ratios", "half"], "--ratios takes numbers in (0, 1]"),
                               (["--pick-ratio", "0"], "--pick-ratio takes a number in (0, 1]"),
                               (["--methods", "mdm,upsample"], "got upsample"),
                               ([], "not a trained run")):
        with pytest.raises(SystemExit) as stop:
            consistency_bound.main([str(tmp_path), *arguments, "--out", str(tmp_path / "x")])
        assert stop.value.code == 2 and message in capsys.readouterr().err
