"""What the end-to-end run tests share: a tiny CPU model and schedule, the resume check, and
an untrained but pushed run for the tests of what reads a run."""

from pathlib import Path

import pytest
import torch

import protoexplain.training_run
from protoexplain.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from protoexplain.config import load_config, save_config
from protoexplain.config_schema import to_dict
from protoexplain.factory import build_dataset, build_model, make_loader
from protoexplain.run_dir import LoadedRun
from protoexplain.training_run import train
from prototypes import push


def tiny_run(*, epochs: int, push_every: int, prototypes_per_class: int) -> list[str]:
    """``--set`` items for a small_cnn of width 4 with 8-dimensional prototypes, batches of
    8 (16 in evaluation), one warm-up and one last-layer epoch, and a push every
    ``push_every`` epochs from epoch ``push_every`` on."""
    return [
        "device=cpu",
        "data.batch_size=8",
        "data.eval_batch_size=16",
        "model.backbone=small_cnn",
        "model.backbone_options={width: 4}",
        f"model.prototypes_per_class={prototypes_per_class}",
        "model.prototype_dim=8",
        f"training.epochs={epochs}",
        "training.warm_epochs=1",
        f"training.push_start={push_every}",
        f"training.push_every={push_every}",
        "training.last_layer_epochs=1",
    ]


def interrupt_training_after(monkeypatch, calls: int) -> None:
    """Make training raise KeyboardInterrupt at its training epoch number ``calls + 1``."""
    real = protoexplain.training_run.run_epoch
    count = {"train": 0}

    def run_epoch(*args, train, **kwargs):
        if train:
            count["train"] += 1
            if count["train"] > calls:
                raise KeyboardInterrupt
        return real(*args, train=train, **kwargs)

    monkeypatch.setattr(protoexplain.training_run, "run_epoch", run_epoch)


def check_resume_reproduces(config, tmp_path, monkeypatch):
    """Train ``config`` straight through; train it again, interrupted after two training
    epochs (the warm epoch and a joint one, which draws augmentations) and resumed; assert
    that both end alike: the same history (times aside), selected stage, weights and
    projection. Returns (straight, resumed) training results."""
    reference = train(config, tmp_path / "straight", progress=False)
    with monkeypatch.context() as patch:
        interrupt_training_after(patch, calls=2)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path / "interrupted", progress=False)
    assert load_checkpoint(tmp_path / "interrupted")["training_state"]["next_stage"] == 2
    resumed = train(config, tmp_path / "interrupted", resume=True, progress=False)

    assert resumed.best_stage == reference.best_stage
    assert resumed.history == [
        {**entry, "seconds": resumed.history[i]["seconds"]}
        for i, entry in enumerate(reference.history)]
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    assert [r.to_dict() for r in resumed.records] == [r.to_dict() for r in reference.records]
    return reference, resumed


PUSHED_RUN = [
    *tiny_run(epochs=1, push_every=1, prototypes_per_class=1),
    "training.push_start=0",  # a schedule that pushes, as every config must
    "data.options={image_size: 32, num_classes: 2, num_samples: 8, clutter: 0}",
    "localization.push_method=upsample",
]
"""A two-class SyntheticParts of 32 px images, 8 per split, one prototype per class."""


def pushed_run(path: Path, *overrides: str) -> LoadedRun:
    """The run of :data:`PUSHED_RUN` (plus ``overrides``) without training: its untrained
    model pushed onto the unaugmented training set, so that its records are real projections.
    Built in well under a second; nothing is written to ``path``."""
    torch.manual_seed(0)
    config = load_config(None, [*PUSHED_RUN, *overrides])
    push_set = build_dataset(config, "train", augment=False)
    model = build_model(config, push_set.num_classes, 32).eval()
    records = push(model, make_loader(push_set, config.data.eval_batch_size, config))
    return LoadedRun(path=path, config=config, model=model, records=records,
                     device=torch.device("cpu"))


def write_run_dir(run: LoadedRun) -> Path:
    """Save ``run`` as a run directory at ``run.path`` holding what
    :func:`protoexplain.run_dir.load_run` reads (``checkpoint.pt`` with the config, model,
    image size and records) and ``config.yaml``; returns the path."""
    run.path.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run.path / CHECKPOINT_NAME, {
        "config": to_dict(run.config), "image_size": int(run.model.image_size[0]),
        "model": run.model.state_dict(), "records": [r.to_dict() for r in run.records]})
    save_config(run.config, run.path / "config.yaml")
    return run.path
