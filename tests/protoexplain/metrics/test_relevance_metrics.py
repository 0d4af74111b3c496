"""Xu-Darme et al.'s relevance and fidelity of the top pixels, on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from protoexplain.metrics.relevance import (
    fidelity_drop,
    fill_pixels,
    relevance,
    top_fraction_masks,
)


def test_top_fraction_selects_exactly_the_highest_pixels():
    maps = torch.arange(64, dtype=torch.float32).view(1, 8, 8)  # pixel value = its index
    masks = top_fraction_masks(maps, [1 / 64, 0.0625, 0.5])
    assert masks.shape == (3, 1, 8, 8)
    assert masks.flatten(2).sum(dim=2).flatten().tolist() == [1, 4, 32]
    assert masks[1, 0].flatten().nonzero().flatten().tolist() == [60, 61, 62, 63]
    assert masks[2, 0].flatten()[32:].all() and not masks[2, 0].flatten()[:32].any()


def test_top_fraction_of_a_flat_map_still_selects_the_requested_count_reproducibly():
    flat = torch.ones(2, 8, 8)
    masks = top_fraction_masks(flat, [0.25], seed=5)
    assert masks.flatten(2).sum(dim=2).tolist() == [[16, 16]]
    assert torch.equal(masks, top_fraction_masks(flat, [0.25], seed=5))
    assert torch.equal(masks[0, 0], masks[0, 1])  # the same tie order for every map
    assert not torch.equal(masks, top_fraction_masks(flat, [0.25], seed=6))


def test_top_fraction_keeps_at_least_one_pixel_and_rejects_bad_fractions():
    maps = torch.rand(1, 4, 4)
    assert top_fraction_masks(maps, [0.001]).sum() == 1
    with pytest.raises(ValueError, match="fractions"):
        top_fraction_masks(maps, [0.0])


def test_relevance_is_the_share_of_selected_pixels_inside_the_object():
    maps = torch.zeros(1, 8, 8)
    maps[0, 0, :4] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # the top 4 pixels: row 0, columns 0-3
    objects = torch.zeros(1, 8, 8, dtype=torch.bool)
    objects[0, :, 1:3] = True  # columns 1 and 2
    masks = top_fraction_masks(maps, [1 / 64, 2 / 64, 4 / 64])
    assert relevance(masks, objects).flatten().tolist() == pytest.approx([0.0, 0.5, 0.5])


def test_fill_pixels_replaces_only_masked_pixels_per_fraction():
    images = torch.rand(2, 3, 4, 4)
    masks = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    masks[0, :, 0, 0] = True
    masks[1, 1, 3, 3] = True
    fill = torch.tensor([0.1, 0.2, 0.3])
    filled = fill_pixels(images, masks, fill).view(2, 2, 3, 4, 4)
    assert torch.allclose(filled[0, :, :, 0, 0], fill.expand(2, 3))
    assert torch.allclose(filled[1, 1, :, 3, 3], fill)
    untouched = ~masks.unsqueeze(2).expand(-1, -1, 3, -1, -1)
    assert torch.equal(filled[untouched], images.expand(2, -1, -1, -1, -1)[untouched])



def test_fill_pixels_takes_replacement_images_pixel_by_pixel():
    images = torch.rand(2, 3, 4, 4)
    replacement = torch.rand(2, 3, 4, 4)
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.bool)
    masks[0, 0, 1, 2] = True
    filled = fill_pixels(images, masks, replacement)
    assert torch.equal(filled[0, :, 1, 2], replacement[0, :, 1, 2])
    masks_out = ~masks[0].unsqueeze(1).expand(-1, 3, -1, -1)
    assert torch.equal(filled[masks_out], images[masks_out])

def test_fidelity_is_the_relative_drop_of_the_score_when_top_pixels_take_the_fill():
    images = torch.ones(1, 1, 4, 4)  # score = sum of pixels = 16

    def score(batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(1).sum(dim=1)

    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0], maps[0, 0, 1] = 2.0, 1.0
    masks = top_fraction_masks(maps, [1 / 16, 2 / 16])
    drop = fidelity_drop(score, images, masks, torch.zeros(1), reference=torch.tensor([16.0]))
    assert drop.flatten().tolist() == pytest.approx([1 / 16, 2 / 16])
