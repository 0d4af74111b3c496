"""Learned-mask localization (MDM, HDM, NeuroMask) and SmoothGrad on a model whose prototypes'
evidence is known: each prototype is a pure colour, each image holds a square of each colour,
and the latent map is shifted so that upsampling the similarity map misses the square."""

import pytest
import torch
from torch import nn

import hdm
import prototypes.localization.learned_masks as learned_masks
from prototypes import localize
from prototypes.localization.peak_choice import weight_by_density
from tests.prototypes.colour_squares import colour_model, colour_square_pairs
from tests.prototypes.tiny_protopnet import make_model
from tests.prototypes.tiny_xprotonet import make_xprotonet

INPUT_METHODS = {
    "mdm": {"steps": 30},
    "hdm": {"benchmark_steps": 15, "auxiliary_steps": 15},
    # Without its Laplacian smoothness term, which spreads the mask around the square: with it,
    # 150 steps put 0.22-0.31 of the map inside the square, 300 steps 0.39-0.58. The sparse
    # mask needs a relative threshold for a tight box.
    "neuromask": {"steps": 150, "lr": 0.1, "weight_limit": 3.0, "weights": (50.0, 16.0, 0.0),
                  "relative_threshold": 0.2},
    "smoothgrad": {"samples": 8},
}
"""Methods that look at the pixels, with options that converge on this small case."""


@pytest.fixture(scope="module")
def case():
    return colour_model(), *colour_square_pairs()


def _peak_inside(maps: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    peak = maps.flatten(1).argmax(dim=1)
    return inside.flatten(1).gather(1, peak[:, None]).squeeze(1)


def _energy_inside(maps: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    return (maps * inside).sum(dim=(1, 2)) / maps.sum(dim=(1, 2))


def _box_overlaps(boxes: torch.Tensor, inside: torch.Tensor) -> list[bool]:
    return [bool(square[y0:y1, x0:x1].any())
            for (y0, y1, x0, x1), square in zip(boxes.tolist(), inside, strict=True)]


def test_upsampled_similarity_misses_the_square_of_the_shifted_latent_map(case):
    model, images, ids, inside = case
    found = localize(model, images, ids, method="upsample")
    assert not _peak_inside(found.maps, inside).any()
    assert (_energy_inside(found.maps, inside) < 0.1).all()


@pytest.mark.parametrize("method", sorted(INPUT_METHODS))
def test_method_finds_the_square_of_the_requested_prototype_colour(method, case):
    model, images, ids, inside = case  # each image twice: once per prototype
    found = localize(model, images, ids, method=method, **INPUT_METHODS[method])
    assert _peak_inside(found.maps, inside).all()
    # The square is 6 % of the image; the maps put at least 5 times that share inside it.
    assert (_energy_inside(found.maps, inside) > 0.3).all()
    assert all(_box_overlaps(found.boxes, inside))


@pytest.mark.parametrize("method", ["mdm", "hdm"])
def test_learned_mask_boxes_centre_on_the_square(method, case):
    model, images, ids, inside = case
    boxes = localize(model, images, ids, method=method, **INPUT_METHODS[method]).boxes
    rows = (boxes[:, 0] + boxes[:, 1] - 1) // 2
    columns = (boxes[:, 2] + boxes[:, 3] - 1) // 2
    assert inside[torch.arange(len(ids)), rows, columns].all()


def test_learned_mask_options_reach_the_explainer():
    model = make_model(image_size=32)
    images = torch.rand(2, 3, 32, 32)
    # No steps: the masks stay at their uniform initial value, so the maps are constant (0).
    found = localize(model, images, [0, 1], method="mdm", steps=0)
    assert torch.equal(found.maps, torch.zeros(2, 32, 32))
    seeded = [localize(model, images, [0, 1], method="neuromask", steps=3, seed=seed).maps
              for seed in (0, 0, 1)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])


def test_unknown_learned_mask_option_names_the_method_and_its_options():
    model = make_model(image_size=32)
    with pytest.raises(ValueError, match=r"'hdm'.*iterations.*benchmark_steps"):
        localize(model, torch.rand(1, 3, 32, 32), [0], method="hdm", iterations=5)


@pytest.mark.parametrize("method, explainer, defaults, override, quick", [
    ("neuromask", hdm.NeuroMask, {"baseline": "blur", "weight_limit": 2.0}, {"baseline": "zero"},
     {"steps": 1}),
    # The score, density_sigma and peak_candidates are applied around the explainer (the target
    # it explains, the map it returns), so only the other options reach its constructor.
    ("mdm", hdm.MDM, {"deletion_weight": 1.0}, {"deletion_weight": 0.0}, {"steps": 1}),
    ("hdm", hdm.HDM, {"deletion_weight": 1.0, "stages": 1}, {"stages": 2},
     {"benchmark_steps": 1, "auxiliary_steps": 1}),
])
def test_prototype_defaults_reach_the_explainer_and_the_callers_options_win(
        monkeypatch, method, explainer, defaults, override, quick):
    received = []  # the options of the explainers built around the model (the option check
    # builds one around a stand-in first)

    class Recorder(explainer):
        def __init__(self, explained_model, **options):
            if explained_model is model:
                received.append(options)
            super().__init__(explained_model, **options)

    monkeypatch.setitem(hdm.METHODS, method, Recorder)
    model = make_model(image_size=32)
    images = torch.rand(1, 3, 32, 32)
    localize(model, images, [0], method=method, **quick)
    localize(model, images, [0], method=method, **quick, **override)
    assert received == [{**defaults, **quick}, {**defaults, **override, **quick}]


def test_mdm_maps_are_density_weighted_by_default():
    torch.manual_seed(0)
    model = make_model(image_size=32)
    images = torch.rand(2, 3, 32, 32)
    # without the occlusion peak, which re-weights the map around the point it picks (tested
    # below)
    weighted = localize(model, images, [0, 1], method="mdm", steps=3, peak_candidates=0).maps
    raw = localize(model, images, [0, 1], method="mdm", steps=3, density_sigma=0,
                   peak_candidates=0).maps
    assert not torch.allclose(weighted, raw)
    torch.testing.assert_close(weighted, weight_by_density(raw, 0.1 * 32))


def test_peak_score_reads_the_similarity_where_it_peaked_on_the_unmasked_image(monkeypatch):
    explained = {}

    class Probe(hdm.Explainer):
        """Records the explained score on the images flipped left to right (the peak moves)."""

        def __init__(self, model, **options):
            super().__init__(model)
            self.baseline, self.blur_sigma = "blur", 10.0  # for MDM's default occlusion peak

        def explain(self, images, target):
            explained["score"] = target.score(self.model(images.flip(-1)))
            return torch.zeros(images.shape[0], *images.shape[-2:])

    monkeypatch.setitem(hdm.METHODS, "mdm", Probe)
    torch.manual_seed(0)
    model = make_model(image_size=32).eval()
    images = torch.rand(2, 3, 32, 32)
    ids = torch.tensor([0, 3])
    rows = torch.arange(2)
    with torch.no_grad():
        peaks = model(images).similarity_maps[rows, ids].flatten(1).argmax(dim=1)
        flipped = model(images.flip(-1))
    localize(model, images, ids, method="mdm", score="peak")
    at_peak = flipped.similarity_maps[rows, ids].flatten(1)[rows, peaks]
    torch.testing.assert_close(explained["score"], at_peak)
    localize(model, images, ids, method="mdm")  # the prototype default, "auto": peak on ProtoPNet
    torch.testing.assert_close(explained["score"], at_peak)
    localize(model, images, ids, method="mdm", score="pooled")
    torch.testing.assert_close(explained["score"], flipped.similarities[rows, ids])
    assert not torch.allclose(at_peak, flipped.similarities[rows, ids])
    with pytest.raises(ValueError, match="score must be one of"):
        localize(model, images, ids, method="mdm", score="mean")
    for bad in ("wide", -0.1):
        with pytest.raises(ValueError, match="density_sigma must be a number >= 0"):
            localize(model, images, ids, method="mdm", density_sigma=bad)


def test_peak_candidates_choose_the_peak_by_occlusion_with_the_explainers_baseline(
        monkeypatch):
    calls = []

    def record(model, images, score, maps, **options):
        calls.append(options)
        return maps

    monkeypatch.setattr(learned_masks, "choose_peak_by_occlusion", record)
    model = make_model(image_size=32)
    images = torch.rand(2, 3, 32, 32)
    quick = {"benchmark_steps": 1, "auxiliary_steps": 1}
    localize(model, images, [0, 1], method="hdm", baseline="mean", peak_candidates=8, **quick)
    assert calls == [{"candidates": 8, "baseline": "mean", "blur_sigma": 10.0, "prior": None,
                      "tolerance": 1.0}]
    localize(model, images, [0, 1], method="hdm", **quick)  # not HDM's default
    localize(model, images, [0, 1], method="mdm", steps=1, peak_candidates=0)
    assert len(calls) == 1
    localize(model, images, [0, 1], method="mdm", steps=1)  # MDM's default: 8 candidates
    assert calls[1] == {"candidates": 8, "baseline": "blur", "blur_sigma": 10.0, "prior": None,
                        "tolerance": 1.0}
    localize(make_xprotonet(image_size=32), images, [0, 1], method="mdm", steps=1,
             peak_candidates=3)
    assert calls[2] == {"candidates": 3, "baseline": "blur", "blur_sigma": 10.0, "prior": None,
                        "tolerance": 1.0}
    for bad in (-1, 2.5, True, "auto"):
        with pytest.raises(ValueError, match="peak_candidates must be an integer >= 0"):
            localize(model, images, [0, 1], method="hdm", peak_candidates=bad, **quick)


def test_peak_tolerance_passes_the_upsampled_similarity_map_as_the_prior(monkeypatch):
    calls = []

    def record(model, images, score, maps, **options):
        calls.append(options)
        return maps

    monkeypatch.setattr(learned_masks, "choose_peak_by_occlusion", record)
    model = make_model(image_size=32).eval()
    images = torch.rand(2, 3, 32, 32)
    localize(model, images, [0, 3], method="mdm", steps=1, peak_tolerance=0.75)
    assert calls[0]["tolerance"] == 0.75
    with torch.no_grad():
        similarity = model(images).similarity_maps[[0, 1], [0, 3]]
    expected = torch.nn.functional.interpolate(similarity[:, None], size=(32, 32),
                                               mode="bicubic", align_corners=False)[:, 0]
    torch.testing.assert_close(calls[0]["prior"], expected)
    for bad in (0, 1.5, True, "half"):
        with pytest.raises(ValueError, match=r"peak_tolerance must be a number in \(0, 1\]"):
            localize(model, images, [0, 1], method="mdm", steps=1, peak_tolerance=bad)


class CentreWindow(nn.Module):
    """Blacks out everything but the centre 16x16 pixels of a 32 px image."""

    def __init__(self) -> None:
        super().__init__()
        window = torch.zeros(1, 1, 32, 32)
        window[..., 8:24, 8:24] = 1.0
        self.register_buffer("window", window)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.window


@pytest.mark.parametrize("method, options", [
    ("mdm", {}), ("hdm", {}), ("neuromask", {}),
    ("neuromask", {"baseline": "zero", "weight_limit": 10.0}),  # the official code's settings
])
def test_learned_masks_leave_the_frame_the_model_cannot_see_empty(method, options):
    """The colour model behind a window that shows it only the centre 16x16 pixels, each image
    with a red square in the centre: nothing on the image's outer 2-pixel frame can matter.
    Measured mean map on the frame: MDM and HDM 0.0000; NeuroMask 0.0002 with the prototype
    defaults (0.0009 with the 'valid' Laplacian) and 0.0000 with the official settings (0.16
    with the 'valid' Laplacian)."""
    model = colour_model(shift=0)
    model.features = nn.Sequential(CentreWindow(), *model.features)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    images[0, :, 12:20, 12:20] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    images[1, :, 8:16, 14:22] = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    maps = localize(model, images, [0, 0], method=method, **options).maps
    frame = torch.ones(32, 32, dtype=torch.bool)
    frame[2:-2, 2:-2] = False
    on_frame = maps[:, frame].mean(dim=1)
    assert bool((on_frame < 0.02).all()), on_frame
