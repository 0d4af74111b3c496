"""The ``upsample`` localization against OpenCV and a direct percentile computation."""

import cv2
import numpy as np
import pytest
import torch

from prototypes import LOCALIZATION_METHODS, Localization, high_activation_box, localize
from prototypes.localization import min_max_normalise, upsample_maps
from prototypes.receptive_field import receptive_field_box
from tests.prototypes.tiny_protopnet import make_model


def _direct_box(activation: np.ndarray, percentile: float = 95) -> tuple[int, int, int, int]:
    """Bounding box (end-exclusive) of the pixels >= the map's NumPy percentile."""
    mask = activation >= np.percentile(activation, percentile)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1


@pytest.mark.parametrize(("small", "large"), [((7, 7), (224, 224)), ((2, 2), (16, 16)),
                                              ((3, 5), (37, 61))])
def test_upsample_maps_reproduce_opencv_inter_cubic(small, large):
    maps = torch.randn(4, *small) * 3
    ours = upsample_maps(maps, large).numpy()
    for b in range(4):
        reference = cv2.resize(maps[b].numpy(), dsize=large[::-1], interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(ours[b], reference, atol=1e-4)


def test_high_activation_box_matches_a_direct_95th_percentile_computation():
    generator = np.random.default_rng(0)
    smooth = cv2.resize(generator.normal(size=(7, 7)).astype(np.float32), (224, 224),
                        interpolation=cv2.INTER_CUBIC)
    ties = generator.integers(0, 4, size=(30, 20)).astype(np.float32)  # many equal values
    for maps in (smooth[None], generator.normal(size=(6, 19, 23)).astype(np.float32),
                 ties[None]):
        boxes = high_activation_box(torch.from_numpy(maps))
        assert [tuple(box) for box in boxes.tolist()] == [_direct_box(m) for m in maps]
    box = high_activation_box(torch.from_numpy(smooth[None]), percentile=50)[0]
    assert tuple(box.tolist()) == _direct_box(smooth, 50)


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
        assert tuple(found.boxes[b].tolist()) == _direct_box(upsampled)
        normalised = (upsampled - upsampled.min()) / (upsampled.max() - upsampled.min())
        np.testing.assert_allclose(found.maps[b].numpy(), normalised, atol=1e-4)
    assert found.maps.shape == (3, 32, 32) and found.boxes.dtype == torch.int64


def test_localize_is_batched_over_image_prototype_pairs(tiny_model):
    images = torch.rand(4, 3, 16, 16)
    ids = [5, 0, 2, 2]
    together = localize(tiny_model, images, ids)
    for b in range(4):
        alone = localize(tiny_model, images[b:b + 1], ids[b:b + 1])
        torch.testing.assert_close(together.maps[b], alone.maps[0])
        assert torch.equal(together.boxes[b], alone.boxes[0])


def test_min_max_normalise_scales_each_map_and_keeps_constant_maps_finite():
    maps = torch.stack([torch.arange(6.0).view(2, 3) - 2, torch.full((2, 3), 7.0)])
    normalised = min_max_normalise(maps)
    torch.testing.assert_close(normalised[0], torch.arange(6.0).view(2, 3) / 5)
    assert torch.equal(normalised[1], torch.zeros(2, 3))


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


def test_methods_are_looked_up_by_name(tiny_model, monkeypatch):
    def centre(model, images, prototype_ids, *, size):
        return Localization(maps=torch.zeros(len(images), 16, 16),
                            boxes=torch.full((len(images), 4), size))

    monkeypatch.setitem(LOCALIZATION_METHODS, "centre", centre)
    found = localize(tiny_model, torch.rand(1, 3, 16, 16), [0], method="centre", size=3)
    assert found.boxes.tolist() == [[3, 3, 3, 3]]
    with pytest.raises(ValueError, match="unknown localization method 'no_such_method'.*upsample"):
        localize(tiny_model, torch.rand(1, 3, 16, 16), [0], method="no_such_method")


def test_localize_checks_prototype_ids(tiny_model):
    with pytest.raises(ValueError, match="one prototype id per image"):
        localize(tiny_model, torch.rand(2, 3, 16, 16), [0])
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        localize(tiny_model, torch.rand(1, 3, 16, 16), [6])
