"""Where a learned mask peaks: density weighting, candidate points, occlusion windows, and
moving the peak to the region the model needs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prototypes.localization.peak_choice import (
    candidate_points,
    choose_peak_by_occlusion,
    map_candidates,
    square_windows,
    weight_by_density,
)
from tests.hdm.hdm_models import BOX, IMAGE_SIZE, RegionModel


def test_density_weighting_peaks_at_a_plateau_centre_and_prefers_a_blob_to_a_speck():
    maps = torch.zeros(2, 21, 21)
    maps[0, 4:15, 6:17] = 1.0  # plateau centred on (9, 11): argmax would take (4, 6)
    maps[1, 2, 2] = 1.0  # an isolated speck at the top value ...
    maps[1, 10:17, 10:17] = 0.9  # ... loses to a dense blob just below it
    weighted = weight_by_density(maps, sigma=3.0)
    assert divmod(int(weighted[0].flatten().argmax()), 21) == (9, 11)
    assert divmod(int(weighted[1].flatten().argmax()), 21) == (13, 13)
    assert torch.equal(weighted > 0, maps > 0)  # the support is kept
    assert float(weighted.amin()) == 0.0 and torch.allclose(weighted.amax(dim=(1, 2)),
                                                           torch.ones(2))
    assert torch.equal(weight_by_density(maps, sigma=0.0), maps)
    assert torch.equal(weight_by_density(torch.zeros(1, 5, 5), sigma=1.0), torch.zeros(1, 5, 5))



def test_candidates_are_the_highest_grid_points_apart_and_above_the_relative_floor():
    maps = torch.zeros(1, 12, 12)
    # the grid of step 4 has points at rows and columns 2, 6 and 10
    maps[0, 2, 2], maps[0, 2, 6], maps[0, 6, 6], maps[0, 10, 10] = 1.0, 0.9, 0.5, 0.2
    maps[0, 3, 3] = 0.95  # off the grid: never a candidate
    points, valid = candidate_points(maps, step=4, count=3, min_relative=0.15, spacing=0)
    assert points.tolist() == [[[2, 2], [2, 6], [6, 6]]]
    assert valid.tolist() == [[True, True, True]]
    points, valid = candidate_points(maps, step=4, count=3, min_relative=0.15, spacing=4)
    assert points[valid].tolist() == [[2, 2], [10, 10]]  # (2, 6) and (6, 6) are too close
    _, valid = candidate_points(maps, step=4, count=20, min_relative=0.3, spacing=0)
    assert valid.shape == (1, 9) and valid.sum() == 3  # at most the 9 grid points
    _, valid = candidate_points(torch.zeros(1, 8, 8), step=4, count=2, min_relative=0.0,
                                spacing=0)
    assert not valid.any()  # an empty map has no candidate


def test_map_candidates_scale_the_grid_and_the_square_with_the_image():
    maps = torch.zeros(2, 50, 100)
    # on the grid of step 5 (rows and columns 2, 7, 12, ...); (17, 27) lies within 10 px of
    # (12, 22)
    maps[0, 12, 22], maps[0, 17, 27], maps[0, 32, 82], maps[1, 42, 42] = 1.0, 0.9, 0.8, 0.5
    points, valid, half_size = map_candidates(maps, candidates=3, grid_step=0.1, region=0.2,
                                              min_relative=0.3, spacing=1.0)
    # the shorter side is 50 px: a grid step of 5 px and squares of half side 10 px, which the
    # candidates lie more than apart
    assert half_size == pytest.approx(10.0)
    expected = candidate_points(maps, step=5, count=3, min_relative=0.3, spacing=10.0)
    assert torch.equal(points, expected[0]) and torch.equal(valid, expected[1])
    assert points[0][valid[0]].tolist() == [[12, 22], [32, 82]]
    assert points[1][valid[1]].tolist() == [[42, 42]]


def test_square_windows_cover_the_half_side_around_each_point_clipped_at_the_border():
    points = torch.tensor([[[4, 4], [0, 9]]])
    windows = square_windows(points, (10, 10), half_size=1.5)
    assert windows.shape == (1, 2, 10, 10)
    assert torch.equal(windows[0, 0].nonzero().amin(0), torch.tensor([3, 3]))
    assert torch.equal(windows[0, 0].nonzero().amax(0), torch.tensor([5, 5]))
    assert float(windows[0, 1].sum()) == 4.0  # rows 0-1, columns 8-9


def _two_blob_map() -> torch.Tensor:
    """A map with a dense decoy blob away from RegionModel's evidence box and a smaller,
    weaker blob on it: the decoy holds the peak."""
    maps = torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE)
    maps[0, 0:6, 0:6] = 1.0  # decoy, outside BOX = rows 10-21, columns 12-23
    y0, y1, x0, x1 = BOX
    maps[0, y0 + 3:y1 - 3, x0 + 3:x1 - 3] = 0.8
    return maps


def _peak(maps: torch.Tensor) -> tuple[int, int]:
    return divmod(int(maps[0].flatten().argmax()), maps.shape[-1])


def test_the_peak_moves_to_the_blob_whose_removal_lowers_the_score():
    torch.manual_seed(0)
    model = RegionModel().train()  # put in eval mode while scoring, then restored
    images = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE) * 0.5 + 0.5
    maps = _two_blob_map()
    assert _peak(maps)[0] < 6  # the decoy's
    chosen = choose_peak_by_occlusion(model, images, torch.tensor([0]), maps, candidates=4,
                                      grid_step=0.1, region=0.15, baseline="zero")
    y0, y1, x0, x1 = BOX
    row, column = _peak(chosen)
    assert y0 <= row < y1 and x0 <= column < x1
    assert model.training and all(p.requires_grad for p in model.parameters())
    assert torch.equal(chosen > 0, maps > 0)  # the support is kept
    assert float(chosen.max()) == 1.0 and float(chosen.min()) == 0.0
    decoy_share = float(chosen[0, 0:6, 0:6].max())
    assert 0.5 <= decoy_share < 1.0  # the decoy is only down-weighted, by at most the floor
    unchanged = choose_peak_by_occlusion(model, images, torch.tensor([0]), maps, candidates=4,
                                         grid_step=0.1, region=0.15, baseline="zero", floor=1.0)
    torch.testing.assert_close(unchanged, maps)
    speck = torch.zeros_like(maps)
    speck[0, 0, 0], speck[0, 0, 1] = 0.5, 1.0  # off the grid (rows and columns 1, 4, ...)
    torch.testing.assert_close(
        choose_peak_by_occlusion(model, images, torch.tensor([0]), speck, grid_step=0.1), speck)


def test_a_callable_target_and_a_batch_give_each_pair_its_own_peak():
    torch.manual_seed(0)
    model = RegionModel().eval()
    images = torch.rand(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 0.5 + 0.5
    y0, y1, x0, x1 = BOX
    images[1, :, y0:y1, x0:x1] = 0  # no evidence: no removal lowers the score
    maps = torch.cat([_two_blob_map(), _two_blob_map()])

    def class_zero(output: torch.Tensor) -> torch.Tensor:
        return output[:, 0]

    chosen = choose_peak_by_occlusion(model, images, class_zero, maps, candidates=4,
                                      grid_step=0.1, region=0.15, baseline="zero")
    row, column = _peak(chosen[:1])
    assert y0 <= row < y1 and x0 <= column < x1
    assert _peak(chosen[1:])[0] < 6  # ties: the highest candidate, the decoy's, stays


class TwoRegionModel(nn.Module):
    """Class 0's score: the mean of region A (rows and columns 2-7) plus 0.9 times that of
    region B (rows and columns 20-25); nothing else counts."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        region_a = images[:, :, 2:8, 2:8].mean(dim=(1, 2, 3))
        region_b = images[:, :, 20:26, 20:26].mean(dim=(1, 2, 3))
        return torch.stack([region_a + 0.9 * region_b, torch.zeros_like(region_a)], dim=1)


def test_a_prior_breaks_the_tie_among_candidates_the_model_relies_on_about_as_much():
    images = torch.ones(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    maps = torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE)
    maps[0, 2:8, 2:8], maps[0, 20:26, 20:26], maps[0, 2:8, 20:26] = 1.0, 0.8, 0.6  # A, B, C
    prior = torch.zeros_like(maps)
    prior[0, 2:8, 20:26], prior[0, 20:26, 20:26], prior[0, 2:8, 2:8] = 1.0, 0.5, 0.1

    def peak_region(**options) -> str:
        chosen = choose_peak_by_occlusion(TwoRegionModel(), images, torch.tensor([0]), maps,
                                          candidates=4, grid_step=0.1, region=0.15,
                                          baseline="zero", **options)
        row, column = _peak(chosen)
        return {(True, True): "A", (False, False): "B", (True, False): "C"}[
            (row < 10, column < 10)]

    assert peak_region() == "A"  # the largest drop
    assert peak_region(prior=prior, tolerance=1.0) == "A"  # no tolerance: the prior is unused
    assert peak_region(prior=prior, tolerance=0.95) == "A"  # B's drop is 0.9 of A's
    # B is within the tolerance and the prior prefers it; C, where the prior is highest, is
    # not relied on at all (no drop), so it is never chosen
    assert peak_region(prior=prior, tolerance=0.8) == "B"
    assert peak_region(prior=prior, tolerance=0.01) == "B"


@pytest.mark.parametrize(("option", "value", "message"), [
    ("candidates", 0, "candidates must be >= 1"),
    ("tolerance", 0.0, r"tolerance must lie in \(0, 1\]"),
    ("floor", 1.5, r"floor must lie in \[0, 1\]"),
    ("baseline", "noise", "baseline must be one of"),
])
def test_bad_options_are_named(option, value, message):
    model = RegionModel().eval()
    images = torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with pytest.raises(ValueError, match=message):
        choose_peak_by_occlusion(model, images, torch.tensor([0]), _two_blob_map(),
                                 **{option: value})
