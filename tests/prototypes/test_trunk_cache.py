"""Stored trunk maps: the trunk's output in the data set's order, batches in any order, and
the models' forward from them equal to their forward from images."""

import torch

from prototypes import ProtoPNet, XProtoNet
from prototypes.trunk_cache import TrunkMaps


def _loader(images, labels, batch_size):
    return [{"image": images[i:i + batch_size], "label": labels[i:i + batch_size]}
            for i in range(0, len(images), batch_size)]


def _protopnet():
    torch.manual_seed(0)
    return ProtoPNet("small_cnn", 3, prototypes_per_class=2, prototype_dim=8, image_size=32,
                     backbone_options={"width": 4})


def test_maps_are_the_trunk_output_in_eval_mode_and_modes_are_restored():
    model = _protopnet().train()
    images, labels = torch.rand(10, 3, 32, 32), torch.arange(10) % 3
    maps = TrunkMaps.compute(model.features, _loader(images, labels, 4),
                             normalize=model.normalize, device="cpu")
    assert model.features.training and all(m.training for m in model.features.modules())
    model.eval()
    with torch.no_grad():
        expected = model.features(model.normalize(images))
    assert maps.maps.shape == expected.shape and len(maps) == 10
    torch.testing.assert_close(maps.maps, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(maps.labels, labels)
    assert maps.nbytes == 4 * expected.nelement()


def test_batches_follow_the_given_order_and_cover_every_image():
    maps = TrunkMaps(torch.arange(7.0).view(7, 1, 1, 1), torch.arange(7) * 10)
    order = [6, 0, 3, 5, 1, 2, 4]
    batches = maps.batches(3, order)
    assert len(batches) == 3
    seen = [batch["image"].flatten().tolist() for batch in batches]
    assert seen == [[6.0, 0.0, 3.0], [5.0, 1.0, 2.0], [4.0]]
    assert [batch["label"].tolist() for batch in batches][0] == [60, 0, 30]
    assert [b["image"].flatten().tolist() for b in maps.batches(3)] == [
        [0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [6.0]]  # re-iterable, default order


def test_protopnet_forward_from_trunk_equals_forward():
    model = _protopnet().eval()
    images = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        direct = model(images)
        cached = model.forward_from_trunk(model.features(model.normalize(images)))
    torch.testing.assert_close(cached.logits, direct.logits)
    torch.testing.assert_close(cached.distance_maps, direct.distance_maps)


def test_xprotonet_forward_from_trunk_equals_forward_without_images():
    torch.manual_seed(0)
    model = XProtoNet("small_cnn", 2, prototypes_per_class=2, prototype_dim=8, image_size=32,
                      backbone_options={"width": 4}).eval()
    images = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        direct = model(images)
        cached = model.forward_from_trunk(model.features(model.normalize(images)))
    torch.testing.assert_close(cached.logits, direct.logits)
    torch.testing.assert_close(cached.occurrence_maps, direct.occurrence_maps)
    assert cached.images is None
