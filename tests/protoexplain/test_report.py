"""The human-readable side of a run directory: prototype pictures and report.html."""

import os

import cv2
import pytest
import torch

from protoexplain.report import write_html_report, write_prototype_pictures
from protoexplain.visualize import BOX_COLOUR, FIELD_COLOUR
from prototypes import ProjectionRecord

SIZE = 16  # display_scale(16) == 12: every tile is 192 px wide, 18 + 192 px tall
SCALE = 12


def _record(prototype: int, class_index: int, sample_index: int) -> ProjectionRecord:
    return ProjectionRecord(prototype=prototype, class_index=class_index,
                            sample_index=sample_index, latent_position=(1, 0), distance=0.25,
                            similarity=1.5, receptive_field_box=(2, 10, 4, 12))


@pytest.fixture
def dataset():
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, SIZE, SIZE, generator=generator)} for _ in range(3)]


def _localizations(count: int) -> dict:
    maps = torch.zeros(count, SIZE, SIZE)
    return {"upsample": {"maps": maps, "boxes": torch.tensor([[0, 8, 0, 8]] * count)},
            "hdm": {"maps": maps + 1, "boxes": torch.tensor([[8, 16, 8, 16]] * count)}}


def _rgb(path):
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_each_prototype_gets_a_picture_of_its_source_then_one_panel_per_method(
        tmp_path, dataset):
    records = [_record(3, 1, 2), _record(7, 0, 0)]
    paths = write_prototype_pictures(tmp_path, dataset, records, _localizations(2),
                                     ["wren", "finch"], progress=False)
    assert paths == ["prototypes/prototype_0003.png", "prototypes/prototype_0007.png"]
    assert sorted(os.listdir(tmp_path / "prototypes")) == ["prototype_0003.png",
                                                           "prototype_0007.png"]
    picture = _rgb(tmp_path / paths[0])
    tile, gap, strip = SIZE * SCALE, 4, 18
    assert picture.shape == (strip + tile, 3 * tile + 2 * gap, 3)
    # the receptive field (y0 2, x0 4) in cyan on the source, then each method's box in yellow
    assert tuple(picture[strip + 2 * SCALE, 4 * SCALE]) == FIELD_COLOUR
    assert tuple(picture[strip, tile + gap]) == BOX_COLOUR  # upsample's box at (0, 0)
    assert tuple(picture[strip + 8 * SCALE, 2 * (tile + gap) + 8 * SCALE]) == BOX_COLOUR
    assert (picture[:, tile:tile + gap] == 255).all()  # white gap between panels
    # the source panel shows the record's sample (index 2), enlarged
    source = (dataset[2]["image"].permute(1, 2, 0) * 255).round().byte().numpy()
    assert (picture[strip + SCALE * 15, 0] == source[15, 0]).all()


def test_the_html_page_holds_the_scalar_metrics_the_benchmark_and_every_prototype(tmp_path):
    metrics = {"test_accuracy": 0.912345, "selected_stage": 3, "device": "cpu",
               "test_per_class_accuracy": [0.5, 1.0]}
    projection = [{"prototype": 4, "class_name": "wren <b>", "sample_index": 17,
                   "latent_position": [1, 2], "distance": 0.123456,
                   "picture": "prototypes/prototype_0004.png",
                   "localization": {"upsample": {"box": [0, 8, 2, 10]}}}]
    path = write_html_report(tmp_path, "run <a & b>", metrics, projection,
                             "| metric | upsample |\n| relevance ↑ | 0.500 |\n")
    assert path == tmp_path / "report.html"
    assert os.listdir(tmp_path) == ["report.html"]
    page = path.read_text()
    assert "<title>run &lt;a &amp; b&gt;</title>" in page
    assert "<tr><td>test_accuracy</td><td>0.9123</td></tr>" in page
    assert "<tr><td>selected_stage</td><td>3</td></tr>" in page
    assert "<tr><td>device</td><td>cpu</td></tr>" in page
    assert "test_per_class_accuracy" not in page  # lists are not scalar metrics
    assert "<pre>| metric | upsample |\n| relevance ↑ | 0.500 |\n</pre>" in page
    assert "<img src='prototypes/prototype_0004.png' alt='prototype 4'>" in page
    assert ("prototype 4 (class wren &lt;b&gt;) from training sample 17 at latent (1, 2), "
            "distance 0.1235; boxes (y0, y1, x0, x1): upsample [0, 8, 2, 10]") in page


def test_a_run_without_benchmark_says_so(tmp_path):
    page = write_html_report(tmp_path, "r", {}, []).read_text()
    assert "<pre>not run</pre>" in page
    assert "<figure>" not in page
