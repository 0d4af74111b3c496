"""import-protopnet: checkpoints in the original ProtoPNet's format, read without its code,
give the same outputs; foreign pickles are refused."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
import torchvision

from protoexplain.cli import main
from protoexplain.config import ConfigError
from protoexplain.import_protopnet import convert_original, import_protopnet
from protoexplain.original_checkpoint import (
    OriginalCheckpoint,
    OriginalCheckpointError,
    read_original_checkpoint,
)
from protoexplain.run_dir import load_run
from tests.protoexplain.original_models import (
    MODULES,
    build_original,
    image_size,
    original_code,
    original_outputs,
)


def _save_original(tmp_path, trunk, activation, *, state_dict=False, legacy=False,
                   change=None):
    """Build a stand-in PPNet, save it as the original does, and forget its modules."""
    with original_code() as modules:
        ppnet = build_original(modules, trunk, activation)
        if change is not None:
            change(ppnet)
        size = image_size(trunk)
        images = torch.rand(3, 3, size, size, generator=torch.Generator().manual_seed(5))
        expected = original_outputs(ppnet, images)
        path = tmp_path / f"{trunk}_{activation}.pth"
        torch.save(ppnet.state_dict() if state_dict else ppnet, path,
                   _use_new_zipfile_serialization=not legacy)
    assert not any(name in sys.modules for name in MODULES)
    return path, images, expected


def _assert_same_outputs(model, images, expected):
    with torch.no_grad():
        output = model.eval()(images)
    for name, value in expected.items():
        torch.testing.assert_close(getattr(output, name), value, rtol=1e-4, atol=1e-5,
                                   msg=lambda text, name=name: f"{name}: {text}")


@pytest.mark.parametrize("activation", ["log", "linear"])
@pytest.mark.parametrize("trunk", ["vgg", "vgg_bn", "resnet", "densenet"])
def test_pickled_models_give_the_original_outputs(tmp_path, trunk, activation):
    path, images, expected = _save_original(tmp_path, trunk, activation)
    checkpoint = read_original_checkpoint(path)
    assert checkpoint.kind == "model" and checkpoint.activation == activation
    imported = convert_original(checkpoint)
    assert imported.activation == activation
    assert imported.info["receptive_field"]["match"] is True
    _assert_same_outputs(imported.model, images, expected)

    run_dir = tmp_path / "run"
    info = import_protopnet(path, run_dir, progress=False)
    assert info["projected"] is False
    run = load_run(run_dir, "cpu")
    assert run.records == []
    _assert_same_outputs(run.model, images, expected)
    assert json.loads((run_dir / "imported.json").read_text())["backbone"] == imported.backbone
    torch.testing.assert_close(run.model.mean, torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize("trunk", ["vgg", "resnet", "densenet"])
def test_state_dicts_import_with_the_activation_given(tmp_path, trunk):
    path, images, expected = _save_original(tmp_path, trunk, "linear", state_dict=True)
    checkpoint = read_original_checkpoint(path)
    assert checkpoint.kind == "state_dict"
    imported = convert_original(checkpoint, activation="linear", image_size=image_size(trunk))
    _assert_same_outputs(imported.model, images, expected)


def test_old_file_format_and_data_parallel_wrapper(tmp_path):
    path, images, expected = _save_original(tmp_path, "vgg_bn", "log", legacy=True)
    _assert_same_outputs(convert_original(read_original_checkpoint(path)).model, images,
                         expected)
    with original_code() as modules:
        ppnet = build_original(modules, "vgg_bn", "log")
        torch.save(torch.nn.DataParallel(ppnet), tmp_path / "parallel.pth")
    _assert_same_outputs(convert_original(read_original_checkpoint(tmp_path / "parallel.pth"))
                         .model, images, expected)


def _prune_like_the_original(ppnet):
    """Remove prototypes 1 and 4 the way the original's PPNet.prune_prototypes does."""
    keep = [0, 2, 3, 5]
    ppnet.prototype_vectors = torch.nn.Parameter(ppnet.prototype_vectors.data[keep])
    ppnet.ones = torch.nn.Parameter(ppnet.ones.data[keep], requires_grad=False)
    ppnet.last_layer.weight.data = ppnet.last_layer.weight.data[:, keep]
    ppnet.last_layer.in_features = len(keep)
    ppnet.prototype_class_identity = ppnet.prototype_class_identity[keep]
    ppnet.num_prototypes = len(keep)
    ppnet.prototype_shape = list(ppnet.prototype_vectors.shape)


def test_a_pruned_original_keeps_its_class_identity_through_the_run(tmp_path):
    path, images, expected = _save_original(tmp_path, "vgg", "log",
                                            change=_prune_like_the_original)
    run_dir = tmp_path / "run"
    import_protopnet(path, run_dir, progress=False)
    run = load_run(run_dir, "cpu")
    assert run.model.prototype_classes.tolist() == [0, 1, 1, 2]
    _assert_same_outputs(run.model, images, expected)


class Foreign:
    """Not a class of the original nor of torch: unpickling it would run this module."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_foreign_classes_are_refused_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"prototype_vectors": torch.zeros(1), "payload": Foreign()}, "evil.pth")
    with pytest.raises(OriginalCheckpointError, match=r"(posix|nt)\.system"):
        read_original_checkpoint("evil.pth")
    assert not (tmp_path / "pwned").exists()

    with original_code() as modules:
        ppnet = build_original(modules, "vgg", "log")
        ppnet.extra = torchvision.transforms.ToTensor()  # an object of a foreign class
        torch.save(ppnet, "extra.pth")
    with pytest.raises(OriginalCheckpointError,
                       match="torchvision.transforms.transforms.ToTensor"):
        read_original_checkpoint("extra.pth")
    assert main(["import-protopnet", "extra.pth", "--out", "run", "--no-progress"]) == 2


def test_standard_architectures_are_named_from_their_parameters():
    """Full-size torchvision trunks (on the meta device: shapes only) in the original's
    parameter names get their standard names and no layout options."""
    for name, prefix in [("vgg16", "features.features."), ("vgg19_bn", "features.features."),
                         ("resnet50", "features."), ("densenet121", "features.features."),
                         ("densenet161", "features.features.")]:
        with torch.device("meta"):
            network = torchvision.models.get_model(name)
        trunk = network.features if not name.startswith("resnet") else network
        state = {prefix + key: value for key, value in trunk.state_dict().items()
                 if not key.startswith("fc.")}
        from protoexplain import import_protopnet as module

        family, renamed = module._trunk_state(OriginalCheckpoint(state_dict=state,
                                                                 kind="state_dict"))
        assert module._backbone(family, renamed, OriginalCheckpoint(state, "state_dict"), None,
                                []) == (name, {})


def test_push_set_records_the_projection_without_changing_the_model(tmp_path):
    from PIL import Image

    path, images, expected = _save_original(tmp_path, "vgg", "log")
    generator = torch.Generator().manual_seed(0)
    for split in ("train", "test"):
        for label in ("a", "b", "c"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for n in range(3):
                pixels = (torch.rand(32, 32, 3, generator=generator) * 255).byte().numpy()
                Image.fromarray(pixels).save(folder / f"{n}.png")
    run_dir = tmp_path / "run"
    code = main(["import-protopnet", str(path), "--out", str(run_dir), "--push-set",
                 str(tmp_path / "images"), "--set", "localization.push_method=upsample",
                 "--no-progress"])
    assert code == 0
    run = load_run(run_dir, "cpu")
    assert len(run.records) == 6 and (run_dir / "projection.json").exists()
    _assert_same_outputs(run.model, images, expected)
    info = json.loads((run_dir / "imported.json").read_text())
    assert info["projected"] and not info["prototypes_replaced"]

    # the original's saved boxes: image index, receptive field, class
    saved = np.array([[r.sample_index, *r.receptive_field_box, r.class_index]
                      for r in run.records])
    np.save(tmp_path / "bb-receptive_field10.npy", saved)
    from_boxes = tmp_path / "from_boxes"
    info = import_protopnet(path, from_boxes, push_set=tmp_path / "images",
                            boxes=tmp_path / "bb-receptive_field10.npy",
                            overrides=["localization.push_method=upsample"], progress=False)
    assert info["boxes_reproduced"] == 6
    for got, pushed in zip(load_run(from_boxes, "cpu").records, run.records, strict=True):
        assert (got.sample_index, got.latent_position, got.receptive_field_box) == (
            pushed.sample_index, pushed.latent_position, pushed.receptive_field_box)
        assert got.distance == pytest.approx(pushed.distance, abs=1e-5)
    saved[0, 5] = 1 - saved[0, 5]  # a class the push set does not have at that index
    np.save(tmp_path / "wrong.npy", saved)
    with pytest.raises(ConfigError, match="another order"):
        import_protopnet(path, tmp_path / "wrong", push_set=tmp_path / "images",
                         boxes=tmp_path / "wrong.npy", progress=False)

    projected = tmp_path / "projected"
    import_protopnet(path, projected, push_set=tmp_path / "images", project=True,
                     overrides=["localization.push_method=upsample"], progress=False)
    assert json.loads((projected / "imported.json").read_text())["prototypes_replaced"]
    # after the push, each prototype is its patch: distance 0 there
    run = load_run(projected, "cpu")
    record = run.records[0]
    from protoexplain.factory import build_dataset

    image = build_dataset(run.config, "train", augment=False)[record.sample_index]["image"]
    with torch.no_grad():
        distances = run.model(image[None]).distance_maps[0, record.prototype]
    assert float(distances[record.latent_position]) == pytest.approx(0, abs=1e-5)

    out = tmp_path / "explained"
    assert main(["explain", str(run_dir), str(tmp_path / "images/test/a/0.png"), "--out",
                 str(out), "--methods", "upsample", "--no-progress"]) == 0
