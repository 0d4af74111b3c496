"""What removed pixels become in the localization metrics."""

from __future__ import annotations

import torch
from torch import nn

from protoexplain.metrics.scores import fill_values


class NormalisedModel(nn.Module):
    """A model with a normalisation mean, the only thing ``fill_values`` reads from it."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.1, 0.2, 0.3]))


def test_fill_is_the_models_normalisation_mean_each_images_mean_colour_or_a_blur():
    model = NormalisedModel()
    images = torch.rand(2, 3, 4, 4)
    assert torch.allclose(fill_values(model, images, "dataset_mean"),
                          torch.tensor([[0.1, 0.2, 0.3]] * 2))
    assert torch.allclose(fill_values(model, images, "image_mean"), images.mean(dim=(2, 3)))
    blurred = fill_values(model, images, "blur")
    assert blurred.shape == images.shape
    assert blurred.std() < images.std()  # smoothed toward each image's local mean
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(fill_values(model, flat, "blur"), flat, atol=1e-6)
