"""SmoothGrad of a prototype's score against a direct gradient computation."""

import pytest
import torch

from prototypes import localize
from prototypes.localization.result import min_max_normalise
from tests.prototypes.tiny_protopnet import make_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(image_size=32).eval()


def _vanilla_gradient_map(model, images, ids):
    """max over channels of |d similarities[b, ids[b]] / d images[b]|, min-max normalised."""
    images = images.clone().requires_grad_(True)
    score = model(images).similarities[torch.arange(len(ids)), ids].sum()
    (gradient,) = torch.autograd.grad(score, images)
    return min_max_normalise(gradient.abs().amax(dim=1))


def test_smoothgrad_without_noise_is_the_gradient_of_the_prototype_score(model):
    images, ids = torch.rand(3, 3, 32, 32), torch.tensor([2, 0, 5])
    found = localize(model, images, ids, method="smoothgrad", samples=3, noise=0.0,
                     magnitude="absolute")
    torch.testing.assert_close(found.maps, _vanilla_gradient_map(model, images, ids))
    signed = localize(model, images, ids, method="smoothgrad", samples=3, noise=0.0,
                      magnitude="signed")
    torch.testing.assert_close(signed.maps, found.maps)


def test_smoothgrad_squared_magnitude_squares_the_gradient_before_averaging(model):
    images, ids = torch.rand(2, 3, 32, 32), torch.tensor([1, 4])
    found = localize(model, images, ids, method="smoothgrad", samples=2, noise=0.0,
                     magnitude="squared", channels="sum")
    images = images.clone().requires_grad_(True)
    score = model(images).similarities[torch.arange(2), ids].sum()
    (gradient,) = torch.autograd.grad(score, images)
    torch.testing.assert_close(found.maps, min_max_normalise(gradient.square().sum(dim=1)))


def test_smoothgrad_is_the_same_whatever_the_chunk_size(model):
    images, ids = torch.rand(3, 3, 32, 32), torch.tensor([2, 0, 5])
    whole = localize(model, images, ids, method="smoothgrad", samples=5)
    chunked = localize(model, images, ids, method="smoothgrad", samples=5, max_batch=4)
    torch.testing.assert_close(chunked.maps, whole.maps)
    assert torch.equal(chunked.boxes, whole.boxes)


def test_smoothgrad_noise_is_seeded_and_scaled_by_the_image_range(model):
    images, ids = torch.rand(2, 3, 32, 32), torch.tensor([3, 3])
    first = localize(model, images, ids, method="smoothgrad", samples=4, seed=7).maps
    again = localize(model, images, ids, method="smoothgrad", samples=4, seed=7).maps
    other = localize(model, images, ids, method="smoothgrad", samples=4, seed=8).maps
    assert torch.equal(first, again) and not torch.allclose(first, other)
    # A constant image has range 0, so its copies are noiseless: any seed, the plain gradient.
    flat = torch.full((1, 3, 32, 32), 0.3)
    noisy = localize(model, flat, [3], method="smoothgrad", samples=4, seed=8,
                     magnitude="absolute")
    torch.testing.assert_close(noisy.maps, _vanilla_gradient_map(model, flat, torch.tensor([3])))


@pytest.mark.parametrize(("option", "value", "message"), [
    ("samples", 0, "samples must be >= 1"), ("noise", -0.1, "noise must be >= 0"),
    ("magnitude", "abs", "magnitude must be one of"), ("channels", "mean", "channels must be"),
    ("max_batch", 0, "max_batch must be >= 1")])
def test_smoothgrad_rejects_bad_options(model, option, value, message):
    with pytest.raises(ValueError, match=f"smoothgrad: {message}"):
        localize(model, torch.rand(1, 3, 32, 32), [0], method="smoothgrad", **{option: value})
