"""End to end through the CLI on generated directories in the official CUB-200-2011 format
and in a class-per-folder layout: train, push, evaluate and benchmark."""

import json

import cv2
import numpy as np
import pytest

from protoexplain.cli import main
from tests.protoexplain.data.cub_fixture import write_cub
from tests.protoexplain.tiny_runs import tiny_run

SMALL_MODEL = [
    *tiny_run(epochs=2, push_every=1, prototypes_per_class=2),
    "data.num_workers=0",
    "model.pretrained=null",
    "localization.images_per_prototype=2",
]


@pytest.mark.slow
def test_cub_release_trains_pushes_and_benchmarks_through_the_cli(tmp_path):
    fixture = write_cub(tmp_path / "data", num_classes=3, train_per_class=6, test_per_class=3)
    run_dir = tmp_path / "run"
    code = main(["train", "configs/cub_protopnet_resnet34.yaml", "--out", str(run_dir),
                 "--no-progress", "--set", f"data.root={fixture.root}",
                 "--set", "data.options={image_size: 32, crop_to_box: true, val_fraction: 0.2}",
                 *[arg for item in SMALL_MODEL for arg in ("--set", item)]])
    assert code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_samples"] == 9
    benchmark = json.loads((run_dir / "benchmark.json").read_text())["upsample"]
    # CUB has part keypoints (consistency, stability) and segmentations (relevance).
    for metric in ("consistency", "stability", "relevance", "energy_object"):
        assert benchmark[metric] is not None and 0.0 <= benchmark[metric] <= 1.0, metric
    projection = json.loads((run_dir / "projection.json").read_text())
    assert {row["class_name"] for row in projection} == set(fixture.class_names)
    assert main(["evaluate", str(run_dir), "--no-progress"]) == 0


@pytest.mark.slow
def test_image_folder_of_mixed_modes_trains_through_the_cli(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for label, colour in enumerate([(0, 0, 200), (0, 200, 0)]):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True)
        for k in range(10):
            image = rng.integers(0, 60, (40 + k, 48, 3), np.uint8)
            image[10:30, 12:36] = colour
            if k % 3 == 0:
                cv2.imwrite(str(folder / f"{k}.png"), cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
            elif k % 3 == 1:
                cv2.imwrite(str(folder / f"{k}.png"), (image.astype(np.uint16) * 257))
            else:
                cv2.imwrite(str(folder / f"{k}.jpg"), image)
    run_dir = tmp_path / "run"
    code = main(["train", "configs/imagefolder_protopnet.yaml", "--out", str(run_dir),
                 "--no-progress", "--set", f"data.root={root}",
                 "--set", "data.options={image_size: 32, val_fraction: 0.2, "
                          "test_fraction: 0.2}",
                 *[arg for item in SMALL_MODEL for arg in ("--set", item)]])
    assert code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_samples"] == 4
    assert "relevance" not in json.loads((run_dir / "benchmark.json").read_text())["upsample"]
