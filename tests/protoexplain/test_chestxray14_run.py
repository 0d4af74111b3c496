"""XProtoNet end to end through the CLI on a tiny ChestX-ray14 release in the official
formats: train, push, AUROC evaluation, box benchmark, evaluate and explain."""

import json

import cv2
import numpy as np
import pytest

from protoexplain.cli import main
from protoexplain.data import ChestXray14
from protoexplain.data.chestxray14 import FINDINGS
from tests.protoexplain.data.test_chestxray14 import write_release
from tests.protoexplain.tiny_runs import tiny_run

SMALL_XPROTONET = [
    *tiny_run(epochs=2, push_every=1, prototypes_per_class=1),
    "data.num_workers=0",
    "data.options={image_size: 32, val_fraction: 0.2}",
    "model.pretrained=null",
    "localization.images_per_prototype=2",
]


def add_images_of_every_finding(root, copies: int = 2) -> None:
    """Append ``copies`` train_val images of each finding (one new patient each) to the
    release, so that every finding has positive training images to push onto."""
    entries = (root / "Data_Entry_2017.csv").open("a")
    listing = (root / "train_val_list.txt").open("a")
    folder = root / "images_003" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for copy in range(copies):
        for number, finding in enumerate(FINDINGS):
            patient = 100 + copy * len(FINDINGS) + number
            name = f"{patient:08d}_000.png"
            entries.write(f"{name},{finding},0,{patient},50Y,F,PA,2500,2048,0.143,0.143\n")
            listing.write(f"{name}\n")
            assert cv2.imwrite(str(folder / name), rng.integers(0, 255, (48, 48), np.uint8))
    entries.close()
    listing.close()


@pytest.mark.slow
def test_chestxray14_release_trains_evaluates_and_benchmarks_boxes_through_the_cli(tmp_path):
    release = write_release(tmp_path / "data")
    add_images_of_every_finding(release.root)
    train_set = ChestXray14(release.root, "train", val_fraction=0.2, image_size=32)
    positives = sum(train_set[i]["label"] for i in range(len(train_set)))
    assert (positives > 0).all(), "every finding needs a training image for the push"

    run_dir = tmp_path / "run"
    code = main(["train", "configs/chestxray14_xprotonet.yaml", "--out", str(run_dir),
                 "--no-progress", "--set", f"data.root={release.root}",
                 *[arg for item in SMALL_XPROTONET for arg in ("--set", item)]])
    assert code == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["test_samples"] == 3
    # Three test images: only Infiltration, Nodule and Pneumothorax have both label values.
    defined = {name for name, value in metrics["test_per_class_auroc"].items()
               if value is not None}
    assert defined == {"Infiltration", "Nodule", "Pneumothorax"}
    assert 0.0 <= metrics["test_auroc"] <= 1.0
    assert len(metrics["test_auroc_undefined"]) == 11
    # Test boxes: Infiltrate on one image, Nodule and Pneumothorax on another.
    benchmark = json.loads((run_dir / "benchmark.json").read_text())["upsample"]
    assert benchmark["pairs"] == 3 and benchmark["prototypes"] == 3
    for name in ("energy_box", "pointing_box", "iou_box"):
        assert 0.0 <= benchmark[name] <= 1.0, name
    projection = json.loads((run_dir / "projection.json").read_text())
    assert [row["class_name"] for row in projection] == list(FINDINGS)

    assert main(["evaluate", str(run_dir), "--no-progress"]) == 0
    image = release.path("00000009_000.png")
    assert main(["explain", str(run_dir), str(image), "--out", str(tmp_path / "explained"),
                 "--no-progress"]) == 0
    assert (tmp_path / "explained" / "00000009_000_explanation.png").is_file()
