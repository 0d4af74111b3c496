"""The amortized mask predictor: shapes, dtypes and devices, one model pass per distinct
image, batch independence, and its settings."""

import pytest
import torch

from prototypes import ProtoPNet
from prototypes.mask_predictor import (
    MaskPredictor,
    MaskPredictorConfig,
    trunk_levels,
    trunk_stages,
)
from tests.prototypes.tiny_protopnet import make_model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return make_model(image_size=32).eval()


def test_levels_are_the_last_child_of_each_of_the_coarsest_resolutions(model):
    # small_cnn: conv, bn, relu (32 px), pool, conv, bn, relu (16), pool, ... relu (4)
    indices, widths = trunk_levels(model, 3)
    sides = []
    x = torch.zeros(1, 3, 32, 32)
    for child in model.features:
        x = child(x)
        sides.append(x.shape[-1])
    assert [sides[i] for i in indices] == [4, 8, 16]
    assert all(sides[i + 1] != sides[i] for i in indices if i + 1 < len(sides))
    assert indices[0] == len(model.features) - 1
    assert len(trunk_levels(model, 10)[0]) == 4  # no more levels than resolutions


def test_reads_the_blocks_of_an_efficientnet_lite_trunk():
    # Lite0 at 64 px: blocks end at 32, 16, 8, 4 and 2 px; the head gives the 2x2 output
    torch.manual_seed(0)
    model = ProtoPNet("efficientnet_lite0", 2, prototypes_per_class=1, prototype_dim=8,
                      image_size=64).eval()
    stages = trunk_stages(model.features)
    assert stages[-1] is model.features and len(stages) == len(model.features._blocks) + 1
    indices, widths = trunk_levels(model, 3)
    assert indices[0] == len(stages) - 1 and widths == [1280, 112, 40]
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=8))
    masks = predictor(model, torch.rand(3, 3, 64, 64), torch.tensor([0, 1, 1]))
    assert masks.shape == (3, 64, 64) and 0 <= masks.min() <= masks.max() <= 1
    assert predictor.logits(model, predictor.features(
        model, torch.rand(1, 3, 64, 64), torch.tensor([0]))).shape == (1, 8, 8)


def test_a_trunk_without_stages_is_refused_by_name():
    with pytest.raises(ValueError, match="Identity has neither"):
        trunk_stages(torch.nn.Identity())


@pytest.mark.parametrize("conditioning", ["similarity", "vector", "both"])
def test_predicts_one_mask_in_unit_range_per_pair(model, conditioning):
    predictor = MaskPredictor(model, MaskPredictorConfig(conditioning=conditioning, channels=8))
    images = torch.rand(5, 3, 32, 32)
    masks = predictor(model, images, torch.tensor([0, 1, 2, 3, 5]))
    assert masks.shape == (5, 32, 32) and masks.dtype == torch.float32
    assert 0 <= masks.min() <= masks.max() <= 1


def test_runs_in_float64_when_model_and_predictor_do():
    torch.manual_seed(0)
    model = make_model(image_size=32).double().eval()
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=8)).double()
    masks = predictor(model, torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 1]))
    assert masks.dtype == torch.float64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_masks_stay_on_the_images_device():
    torch.manual_seed(0)
    model = make_model(image_size=32).cuda().eval()
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=8)).cuda()
    masks = predictor(model, torch.rand(2, 3, 32, 32, device="cuda"), torch.tensor([0, 1]).cuda())
    assert masks.device.type == "cuda"


def test_pairs_sharing_an_image_share_one_model_pass(model):
    predictor = MaskPredictor(model, MaskPredictorConfig(channels=8))
    first, second = torch.rand(2, 3, 32, 32)
    images = torch.stack([first, second, first, first, second])
    found = predictor.features(model, images, torch.tensor([0, 1, 2, 3, 4]))
    assert found.output.similarities.shape[0] == 2
    assert torch.equal(found.image_index[[0, 2, 3]], found.image_index[[0, 0, 0]])
    assert found.image_index[0] != found.image_index[1]


def test_a_pairs_mask_does_not_depend_on_the_rest_of_the_batch(model):
    torch.manual_seed(1)
    predictor = MaskPredictor(model, MaskPredictorConfig(conditioning="both", channels=8))
    images = torch.rand(4, 3, 32, 32)
    ids = torch.tensor([3, 0, 4, 1])
    together = predictor(model, images, ids)
    alone = torch.cat([predictor(model, images[i:i + 1], ids[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)


def test_vector_conditioning_starts_as_the_identity_and_tells_prototypes_apart(model):
    torch.manual_seed(0)
    predictor = MaskPredictor(model, MaskPredictorConfig(conditioning="vector", channels=8))
    images = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    same = predictor(model, images, torch.tensor([0, 5]))
    assert torch.equal(same[0], same[1])  # FiLM starts at zero: no prototype effect yet
    for layer in predictor.film:
        torch.nn.init.normal_(layer.weight)
    other = predictor(model, images, torch.tensor([0, 5]))
    assert not torch.allclose(other[0], other[1])


def test_similarity_conditioning_tells_prototypes_apart_from_the_start(model):
    torch.manual_seed(0)
    predictor = MaskPredictor(model, MaskPredictorConfig(conditioning="similarity", channels=8))
    images = torch.rand(1, 3, 32, 32).expand(2, -1, -1, -1)
    masks = predictor(model, images, torch.tensor([0, 5]))
    assert not torch.allclose(masks[0], masks[1])


@pytest.mark.parametrize(("options", "message"), [
    ({"conditioning": "class"}, "conditioning must be one of"),
    ({"levels": 0}, "levels must be an integer >= 1"),
    ({"channels": 2.5}, "channels must be an integer >= 1"),
])
def test_bad_settings_are_refused_by_name(options, message):
    with pytest.raises(ValueError, match=message):
        MaskPredictorConfig(**options)
