"""``training.cache_frozen_trunk``: the frozen-trunk stages train on maps computed once, end
where training on images does, resume exactly, and refuse what would make the maps wrong."""

from types import SimpleNamespace

import pytest
import torch

import prototypes.trunk_cache
from protoexplain.config import ConfigError, load_config
from protoexplain.frozen_trunk_cache import cached_stages, check_cacheable
from protoexplain.training_run import train
from tests.protoexplain.tiny_runs import check_resume_reproduces, tiny_run

TINY = [
    *tiny_run(epochs=3, push_every=2, prototypes_per_class=2),
    "data.options={image_size: 32, num_classes: 3, num_samples: 24, clutter: 2}",
    "training.learning_rates.joint_features=1e-3",
    "training.warm_epochs=2",
    "training.last_layer_epochs=2",
]


def _config(*extra):
    return load_config(None, [*TINY, *extra])


def _assert_same_history(mine, theirs):
    """Equal stages and numbers, losses and accuracies within float tolerance."""
    assert len(mine) == len(theirs)
    for entry, reference in zip(mine, theirs, strict=True):
        assert set(entry) == set(reference)
        for key, value in reference.items():
            if isinstance(value, float) and key != "seconds":
                assert entry[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
            elif key != "seconds":
                assert entry[key] == value, key


def _count_computes(monkeypatch):
    calls = []
    real = prototypes.trunk_cache.TrunkMaps.compute.__func__

    def compute(cls, trunk, loader, **kwargs):
        calls.append(len(loader.dataset))
        return real(cls, trunk, loader, **kwargs)

    monkeypatch.setattr(prototypes.trunk_cache.TrunkMaps, "compute", classmethod(compute))
    return calls


def test_cached_run_ends_where_the_run_on_images_ends(tmp_path, monkeypatch):
    reference = train(_config(), tmp_path / "images", progress=False)
    calls = _count_computes(monkeypatch)
    cached = train(_config("training.cache_frozen_trunk=true"), tmp_path / "cached",
                   progress=False)
    # stages: warm, warm, joint, push, last_layer x2: the maps are computed for the two warm
    # epochs (train + val) and again after the joint epoch changed the trunk
    kinds = [entry["kind"] for entry in reference.history]
    assert kinds == ["warm", "warm", "joint", "push", "last_layer", "last_layer"]
    assert calls == [24, 24, 24, 24]
    assert cached.best_stage == reference.best_stage
    _assert_same_history(cached.history, reference.history)
    for name, tensor in reference.model.state_dict().items():
        torch.testing.assert_close(cached.model.state_dict()[name], tensor, rtol=1e-4,
                                   atol=1e-5)


def test_resume_with_the_cache_reproduces_the_run(tmp_path, monkeypatch):
    check_resume_reproduces(_config("training.cache_frozen_trunk=true"), tmp_path, monkeypatch)


def test_the_feature_alignment_term_is_refused():
    config = _config("training.cache_frozen_trunk=true", "training.loss.alignment=0.3")
    with pytest.raises(ConfigError,
                       match="'training.cache_frozen_trunk'.*training.loss.alignment"):
        check_cacheable(config, SimpleNamespace(train=SimpleNamespace()))


def test_xprotonet_with_the_transformation_loss_caches_only_the_last_layer_stages(
        tmp_path, monkeypatch):
    xprotonet = ["model.architecture=xprotonet", "data.dataset=SyntheticRadiographs",
                 "data.options={image_size: 32, num_samples: 16}",
                 "localization.metric_options={score: pooled}"]
    assert cached_stages(_config(*xprotonet)) == ("last_layer",)
    assert cached_stages(_config(*xprotonet, "training.loss={transformation: 0}")) == (
        "warm", "last_layer")
    reference = train(_config(*xprotonet), tmp_path / "images", progress=False)
    calls = _count_computes(monkeypatch)
    cached = train(_config(*xprotonet, "training.cache_frozen_trunk=true"), tmp_path / "cached",
                   progress=False)
    assert calls == [16, 16]  # once, for the last-layer stages
    assert "train_transformation" in cached.history[0]  # the warm-up ran on images
    _assert_same_history(cached.history, reference.history)


def test_augmented_training_images_are_refused_and_the_option_off_checks_nothing():
    data = SimpleNamespace(train=SimpleNamespace(augmentation=object()))
    with pytest.raises(ConfigError, match="data.options.augment: false"):
        check_cacheable(_config("training.cache_frozen_trunk=true"), data)
    check_cacheable(_config(), data)
