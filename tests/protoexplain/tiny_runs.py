"""What the end-to-end run tests share: a tiny CPU model and schedule, and the resume check."""

import pytest
import torch

import protoexplain.training_run
from protoexplain.checkpoint import load_checkpoint
from protoexplain.training_run import train


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
