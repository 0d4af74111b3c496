"""The ``upsample`` localization against OpenCV and a direct percentile computation."""

import cv2
import numpy as np
import pytest
import torch

from prototypes import localize
from prototypes.localization.upsample import upsample_maps
from tests.prototypes.localization.numpy_boxes import direct_box
from tests.prototypes.tiny_protopnet import make_model


@pytest.mark.parametrize(("small", "large"), [((7, 7), (224, 224)), ((2, 2), (16, 16)),
                                              ((3, 5), (37, 61))])
def test_upsample_maps_reproduce_opencv_inter_cubic(small, large):
    maps = torch.randn(4, *small) * 3
    ours = upsample_maps(maps, large).numpy()
    for b in range(4):
        reference = cv2.resize(maps[b].numpy(), dsize=large[::-1], interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(ours[b], reference, atol=1e-4)


def test_upsample_localization_is_the_original_pipeline_on_the_models_similarity_map():
    model = make_model(image_size=32).eval()
    images = torch.rand(3, 3, 32, 32)
    ids = torch.tensor([0, 3, 5])
    found = localize(model, images, ids, method="upsample")
    with torch.no_grad():
        similarity = model(images).similarity_maps
    for b in range(3):
        upsampled = cv2.resize(similarity[b, ids[b]].numpy(), dsize=(32, 32),
                               interpolation=cv2.INTER_CUBIC)
        assert tuple(found.boxes[b].tolist()) == direct_box(upsampled)
        normalised = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        np.testing.assert_allclose(found.maps[b].numpy(), normalised, atol=1e-4)
    assert found.maps.shape == (3, 32, 32) and found.boxes.dtype == torch.int64
