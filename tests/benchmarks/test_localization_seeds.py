"""The seed study end to end on a tiny config: training once, the per-run cache, and the
study's ``--set`` overrides reaching runs that were already trained."""

import json
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import localization_seeds  # noqa: E402

from tests.protoexplain.tiny_runs import tiny_run  # noqa: E402

TINY = [
    *tiny_run(epochs=2, push_every=1, prototypes_per_class=1),
    "data.options={image_size: 32, num_classes: 2, num_samples: 16, clutter: 0}",
    "training.pretrain_epochs=0",
    "localization.push_method=upsample",
]


def test_overrides_apply_to_trained_runs_and_cached_methods_are_reused(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"seed": 0}))
    common = [str(config), "--seeds", "0", "--images-per-prototype", "1", "--runs",
              str(tmp_path / "runs"), "--out", str(tmp_path / "study"), "--no-progress",
              *(item for override in TINY for item in ("--set", override))]
    quiet = "localization.metric_options={stability: false, sanity: false}"
    noisy = "localization.metric_options={stability: true, sanity: false}"

    localization_seeds.main([*common, "--methods", "upsample,centre", "--set", quiet])
    first = json.loads((tmp_path / "study.json").read_text())["per_seed"]["0"]
    assert "stability" not in first["upsample"] and first["upsample"]["pairs"] == 2
    run_dir = tmp_path / "runs" / "tiny_seed0"
    trained = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    assert (run_dir / "report" / "index.html").exists()

    # the run was trained without stability; the study's override still turns it on
    localization_seeds.main([*common, "--methods", "upsample,centre", "--set", noisy])
    second = json.loads((tmp_path / "study.json").read_text())["per_seed"]["0"]
    assert {"stability", "consistency"} <= set(second["upsample"])
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == trained  # not trained again

    # same settings: cached methods come back unchanged, a new one is added
    cache = json.loads((run_dir / "seed_study.json").read_text())
    localization_seeds.main([*common, "--methods", "upsample,centre,random", "--set", noisy])
    third = json.loads((tmp_path / "study.json").read_text())["per_seed"]["0"]
    assert third["upsample"] == second["upsample"]
    assert "random" in third
    assert set(json.loads((run_dir / "seed_study.json").read_text())["results"]) == \
        set(cache["results"]) | {"random"}

    # results cached by an older version of the metrics are computed again
    stale = json.loads((run_dir / "seed_study.json").read_text())
    stale["settings"]["metrics_version"] -= 1
    stale["results"]["upsample"]["relevance"] = -1.0
    (run_dir / "seed_study.json").write_text(json.dumps(stale))
    localization_seeds.main([*common, "--methods", "upsample", "--set", noisy])
    fourth = json.loads((tmp_path / "study.json").read_text())["per_seed"]["0"]
    assert fourth["upsample"]["relevance"] == second["upsample"]["relevance"]
    assert "responsible_part_hit" in fourth["upsample"]


def test_a_methods_options_recompute_that_method_alone_and_no_report_is_written(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"seed": 0}))
    common = [str(config), "--seeds", "0", "--images-per-prototype", "1", "--runs",
              str(tmp_path / "runs"), "--out", str(tmp_path / "study"), "--no-progress",
              "--methods", "upsample,mdm", "--no-report",
              *(item for override in TINY for item in ("--set", override)),
              "--set", "localization.metric_options={stability: false, sanity: false}"]
    localization_seeds.main([*common, "--set", "localization.method_options={mdm: {steps: 2}}"])
    cache_path = tmp_path / "runs" / "tiny_seed0" / "seed_study.json"
    assert not (cache_path.parent / "report").exists()  # --no-report
    cache = json.loads(cache_path.read_text())
    assert cache["method_settings"]["mdm"]["options"] == {"steps": 2}
    cache["results"]["upsample"]["relevance"] = -1.0  # marks upsample's cached result
    cache["results"]["mdm"]["relevance"] = -1.0
    cache_path.write_text(json.dumps(cache))

    localization_seeds.main([*common, "--set", "localization.method_options={mdm: {steps: 3}}"])
    cache = json.loads(cache_path.read_text())
    assert cache["results"]["upsample"]["relevance"] == -1.0  # reused
    assert cache["results"]["mdm"]["relevance"] != -1.0  # computed again with 3 steps
    assert cache["method_settings"]["mdm"]["options"] == {"steps": 3}


def test_a_cache_keyed_on_all_method_options_is_read_per_method(tmp_path):
    old = {"settings": {"metrics_version": 3, "images_per_prototype": 1, "metric_options": {},
                        "method_options": {"hdm": {"benchmark_steps": 10}}},
           "defaults": {"hdm": {"stages": 1}, "upsample": {}},
           "results": {"hdm": {"relevance": 0.5}, "upsample": {"relevance": 0.1}}}
    (tmp_path / "seed_study.json").write_text(json.dumps(old))
    cache = localization_seeds.read_cache(tmp_path / "seed_study.json")
    assert cache["settings"] == {"metrics_version": 3, "images_per_prototype": 1,
                                 "metric_options": {}}
    assert cache["method_settings"] == {
        "hdm": {"options": {"benchmark_steps": 10}, "defaults": {"stages": 1}},
        "upsample": {"options": {}, "defaults": {}}}
    assert cache["results"] == old["results"]
    assert localization_seeds.read_cache(tmp_path / "none.json") == {}


def _saved_study(path: Path, consistencies: dict, *, config: str = "configs/a.yaml",
                 overrides: list | None = None) -> Path:
    """A saved study: per seed, upsample's and hdm's consistency (and mdm's in the first)."""
    per_seed = {seed: {"upsample": {"consistency": up}, "hdm": {"consistency": hdm}}
                for seed, (up, hdm) in consistencies.items()}
    methods = ["upsample", "hdm"]
    if path.stem == "first":
        methods.append("mdm")
        for values in per_seed.values():
            values["mdm"] = {"consistency": 1.0}
    path.write_text(json.dumps({"config": config, "seeds": list(per_seed), "methods": methods,
                                "images_per_prototype": 3, "overrides": overrides or ["x=1"],
                                "environment": path.stem, "per_seed": per_seed}))
    return path


def test_saved_studies_of_one_config_pool_into_one_table_of_all_their_runs(tmp_path):
    first = _saved_study(tmp_path / "first.json", {"0": (0.2, 0.3), "1": (0.1, 0.4)})
    second = _saved_study(tmp_path / "second.json", {"0": (0.3, 0.2), "1": (0.2, 0.3)})
    pooled = localization_seeds.pool_studies([first, second])
    assert pooled["seeds"] == ["first:0", "first:1", "second:0", "second:1"]
    assert pooled["methods"] == ["upsample", "hdm"]  # mdm is only in the first
    assert pooled["aggregate"]["hdm"]["consistency"]["mean"] == pytest.approx(0.3)
    assert pooled["aggregate"]["hdm"]["consistency"]["runs"] == 4
    assert pooled["environment"] == "first; second"

    assert localization_seeds.main(["--from-json", str(first), str(second), "--out",
                                    str(tmp_path / "pooled")]) == 0
    saved = json.loads((tmp_path / "pooled.json").read_text())
    assert saved["comparison"]["consistency"]["wins"] == 3  # second:0 loses
    assert saved["comparison"]["consistency"]["gain"] == pytest.approx(0.1)
    assert "| 3/4 |" in (tmp_path / "pooled.md").read_text()


def test_studies_of_other_settings_are_not_pooled(tmp_path, capsys):
    first = _saved_study(tmp_path / "first.json", {"0": (0.2, 0.3)})
    other = _saved_study(tmp_path / "other.json", {"0": (0.2, 0.3)}, overrides=["x=2"])
    assert localization_seeds.main(["--from-json", str(first), str(other), "--out",
                                    str(tmp_path / "pooled")]) == 2
    error = capsys.readouterr().err
    assert "'overrides'" in error and "other.json" in error
    assert not (tmp_path / "pooled.json").exists()
    forced = localization_seeds.pool_studies([first, other], force=True)
    assert forced["seeds"] == ["first:0", "other:0"]
    assert forced["pooled_settings"][str(other)]["overrides"] == ["x=2"]
    with pytest.raises(ValueError, match="cannot read saved study"):
        localization_seeds.pool_studies([first, tmp_path / "missing.json"])
