"""The baselines: the receptive field of the best match, a seeded random map and a centred
Gaussian."""

import numpy as np
import pytest
import torch

from prototypes import localize
from prototypes.receptive_field import receptive_field_box
from tests.prototypes.tiny_protopnet import make_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(image_size=32)


def test_random_maps_are_seeded_and_independent_across_pairs(model):
    images = torch.rand(3, 3, 32, 32)
    first = localize(model, images, [0, 0, 1], method="random", seed=4)
    again = localize(model, images, [0, 0, 1], method="random", seed=4)
    other = localize(model, images, [0, 0, 1], method="random", seed=5)
    assert torch.equal(first.maps, again.maps) and torch.equal(first.boxes, again.boxes)
    assert not torch.allclose(first.maps, other.maps)
    assert not torch.allclose(first.maps[0], first.maps[1])


def test_random_maps_ignore_the_model_and_the_pixels(model):
    images = torch.rand(2, 3, 32, 32)
    found = localize(model, images, [0, 1], method="random")
    other_model = make_model(image_size=32)
    assert torch.equal(localize(other_model, torch.zeros_like(images), [4, 2],
                                method="random").maps, found.maps)


def test_random_map_varies_on_the_scale_of_its_grid(model):
    images = torch.rand(1, 3, 32, 32)
    # small_cnn has total stride 8: a 4x4 latent grid at 32 px, as grid=4 says explicitly.
    latent_grid = localize(model, images, [0], method="random", seed=2).maps
    assert torch.equal(localize(model, images, [0], method="random", seed=2, grid=4).maps,
                       latent_grid)
    fine = localize(model, images, [0], method="random", seed=2, grid=32).maps

    def roughness(maps):
        return (maps[:, 1:] - maps[:, :-1]).abs().mean()

    assert roughness(latent_grid) < roughness(fine) / 3


def test_centre_map_is_a_centred_gaussian_with_sigma_a_fraction_of_the_short_side(model):
    images = torch.rand(2, 3, 24, 40)
    found = localize(model, images, [0, 3], method="centre", sigma=0.3)
    rows, columns = np.mgrid[0:24, 0:40]
    gaussian = np.exp(-((rows - 11.5) ** 2 + (columns - 19.5) ** 2) / (2 * (0.3 * 24) ** 2))
    expected = (gaussian - gaussian.min()) / (gaussian.max() - gaussian.min())
    for b in range(2):
        np.testing.assert_allclose(found.maps[b].numpy(), expected, atol=1e-5)
    y0, y1, x0, x1 = found.boxes[0].tolist()
    assert y0 + y1 == 24 and x0 + x1 == 40  # centred
    assert (y1 - y0) * (x1 - x0) < 0.1 * 24 * 40


def test_centre_rejects_a_non_positive_sigma(model):
    with pytest.raises(ValueError, match="centre: sigma must be > 0"):
        localize(model, torch.rand(1, 3, 32, 32), [0], method="centre", sigma=0)


def test_receptive_field_localization_marks_the_most_similar_patch(tiny_model):
    images = torch.rand(2, 3, 16, 16)
    found = localize(tiny_model, images, [1, 4], method="receptive_field")
    with torch.no_grad():
        similarity = tiny_model(images).similarity_maps
    for b, prototype in enumerate([1, 4]):
        position = int(similarity[b, prototype].flatten().argmax())
        expected = receptive_field_box(tiny_model.receptive_field, position // 2, position % 2,
                                       (16, 16))
        assert tuple(found.boxes[b].tolist()) == expected
        y0, y1, x0, x1 = expected
        assert found.maps[b].sum() == (y1 - y0) * (x1 - x0)
        assert (found.maps[b, y0:y1, x0:x1] == 1).all()
