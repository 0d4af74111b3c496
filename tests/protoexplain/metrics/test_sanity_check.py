"""Model randomisation and the map similarities of the sanity check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity as skimage_ssim

from protoexplain.metrics.sanity import (
    randomized_copy,
    spearman_correlation,
    structural_similarity,
)
from prototypes import ProtoPNet


def test_spearman_is_one_for_monotone_maps_minus_one_for_reversed_and_nan_for_constant():
    first = torch.arange(16, dtype=torch.float32).view(1, 4, 4).repeat(3, 1, 1)
    second = torch.stack([first[0] ** 2, -first[0], torch.ones(4, 4)])
    rho = spearman_correlation(first, second)
    assert rho[0].item() == pytest.approx(1.0)
    assert rho[1].item() == pytest.approx(-1.0)
    assert math.isnan(rho[2].item())


def test_spearman_with_ties_matches_scipy():
    generator = torch.Generator().manual_seed(0)
    first = torch.randint(0, 4, (3, 6, 6), generator=generator).float()
    second = torch.randint(0, 3, (3, 6, 6), generator=generator).float()
    ours = spearman_correlation(first, second)
    for b in range(3):
        expected = spearmanr(first[b].flatten().numpy(), second[b].flatten().numpy())[0]
        assert ours[b].item() == pytest.approx(expected, abs=1e-6)


def test_ssim_matches_scikit_image_with_gaussian_weights():
    generator = torch.Generator().manual_seed(1)
    first = torch.rand(2, 24, 20, generator=generator)
    second = (first + 0.3 * torch.rand(2, 24, 20, generator=generator)).clamp(0, 1)
    ours = structural_similarity(first, second)
    for b in range(2):
        expected = skimage_ssim(first[b].numpy().astype(np.float64),
                                second[b].numpy().astype(np.float64), data_range=1.0,
                                gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
        assert ours[b].item() == pytest.approx(expected, abs=1e-5)
    assert structural_similarity(first, first).tolist() == pytest.approx([1.0, 1.0])


def test_ssim_rejects_maps_smaller_than_its_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        structural_similarity(torch.rand(1, 8, 8), torch.rand(1, 8, 8))


def test_randomized_copy_redraws_every_learned_parameter_and_keeps_the_original():
    model = ProtoPNet("small_cnn", 2, prototypes_per_class=2, prototype_dim=4, image_size=32,
                      backbone_options={"width": 2})
    with torch.no_grad():  # stand-in for training: move every parameter off its initial value
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    before = {name: p.clone() for name, p in model.state_dict().items()}
    rng_state = torch.get_rng_state()
    randomized = randomized_copy(model, seed=1)
    assert torch.equal(torch.get_rng_state(), rng_state)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])  # the original is untouched
    random_state = randomized.state_dict()
    for name, parameter in model.named_parameters():
        assert not torch.equal(random_state[name], parameter), name
    prototypes = random_state["prototype_vectors"]
    assert torch.equal(prototypes.flatten().sort().values,
                       model.prototype_vectors.flatten().sort().values)  # permuted entries
    for name in ("mean", "std", "prototype_class_identity"):
        assert torch.equal(random_state[name], before[name])
    again = randomized_copy(model, seed=1).state_dict()
    assert all(torch.equal(again[name], random_state[name]) for name in random_state)
