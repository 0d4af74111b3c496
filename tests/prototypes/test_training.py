"""Training phases: what each phase may change, optimiser groups, schedule, failure handling."""

import copy
import math
import warnings

import pytest
import torch

from prototypes import (
    LearningRates,
    LossCoefficients,
    NonFiniteLossError,
    build_optimizer,
    plan_schedule,
    protopnet_loss,
    run_epoch,
    set_phase,
)


def _train(model, batches, phase, **options):
    set_phase(model, phase)
    optimizer = build_optimizer(model, phase).optimizer
    return run_epoch(model, batches, optimizer, LossCoefficients(), train=True, device="cpu",
                     **options)


def _changed(before, after):
    return {name for name, value in after.items() if not torch.equal(value, before[name])}


def test_set_phase_freezes_exactly_as_the_original(tiny_model):
    expected = {"warm": (False, True, True, True), "joint": (True, True, True, True),
                "last_layer": (False, False, False, True)}
    for phase, flags in expected.items():
        set_phase(tiny_model, phase)
        parts = (tiny_model.features, tiny_model.add_on_layers, [tiny_model.prototype_vectors],
                 tiny_model.last_layer)
        for part, flag in zip(parts, flags, strict=True):
            parameters = part.parameters() if hasattr(part, "parameters") else part
            assert all(p.requires_grad == flag for p in parameters), (phase, part)


def test_warm_up_changes_no_backbone_weight_and_not_the_last_layer(tiny_model, toy_batches):
    before = copy.deepcopy(tiny_model.state_dict())
    _train(tiny_model, toy_batches, "warm")
    changed = _changed(before, tiny_model.state_dict())
    assert not any(name.startswith("features.") for name in changed)
    assert "last_layer.weight" not in changed
    assert "prototype_vectors" in changed and "add_on_layers.0.weight" in changed


def test_last_layer_epochs_change_only_the_last_layer(tiny_model, toy_batches):
    before = copy.deepcopy(tiny_model.state_dict())
    _train(tiny_model, toy_batches, "last_layer")
    assert _changed(before, tiny_model.state_dict()) == {"last_layer.weight"}


def test_joint_epochs_train_backbone_add_on_and_prototypes(tiny_model, toy_batches):
    before = copy.deepcopy(tiny_model.state_dict())
    _train(tiny_model, toy_batches, "joint")
    changed = _changed(before, tiny_model.state_dict())
    assert {"features.0.weight", "add_on_layers.0.weight", "prototype_vectors"} <= changed
    assert "last_layer.weight" not in changed  # not in the original's joint optimiser


def test_frozen_batchnorm_statistics_update_only_when_asked(tiny_model, toy_batches):
    before = copy.deepcopy(tiny_model.state_dict())
    _train(tiny_model, toy_batches, "warm", update_frozen_batchnorm=True)  # as the original
    changed = _changed(before, tiny_model.state_dict())
    assert "features.1.running_mean" in changed
    assert "features.0.weight" not in changed and "features.1.weight" not in changed


def test_optimiser_groups_and_learning_rates_are_the_originals(tiny_model):
    def groups(phase):
        optimizer = build_optimizer(tiny_model, phase).optimizer
        assert isinstance(optimizer, torch.optim.Adam)
        return [(g["lr"], g["weight_decay"], len(g["params"])) for g in optimizer.param_groups]

    features = len(list(tiny_model.features.parameters()))
    add_on = len(list(tiny_model.add_on_layers.parameters()))
    assert groups("joint") == [(1e-4, 1e-3, features), (3e-3, 1e-3, add_on), (3e-3, 0, 1)]
    assert groups("warm") == [(3e-3, 1e-3, add_on), (3e-3, 0, 1)]
    assert groups("last_layer") == [(1e-4, 0, 1)]


def test_joint_learning_rates_follow_the_originals_steplr_stepped_before_each_epoch(tiny_model):
    lrs = LearningRates()
    ours = build_optimizer(tiny_model, "joint", lrs)
    # main.py: StepLR(step_size=5, gamma=0.1), .step() at the start of every joint epoch.
    original = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=lrs.joint_features)
    scheduler = torch.optim.lr_scheduler.StepLR(original, step_size=5, gamma=0.1)
    expected, got = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch warns about stepping before optimizer.step
        for _ in range(16):
            scheduler.step()
            expected.append(original.param_groups[0]["lr"])
            got.append(ours.optimizer.param_groups[0]["lr"])
            ours.after_epoch()
    assert got == pytest.approx(expected)
    assert got[:4] == pytest.approx([1e-4] * 4) and got[4] == pytest.approx(1e-5)


def test_schedule_reproduces_the_original_epoch_loop():
    stages = plan_schedule(21, warm_epochs=5, push_start=10, push_every=10, last_layer_epochs=2)
    got = [(s.kind, s.epoch) for s in stages]
    expected = ([("warm", e) for e in range(5)] + [("joint", e) for e in range(5, 11)]
                + [("push", 10), ("last_layer", 10), ("last_layer", 10)]
                + [("joint", e) for e in range(11, 21)]
                + [("push", 20), ("last_layer", 20), ("last_layer", 20)])
    assert got == expected
    assert [s.index for s in stages] == list(range(len(stages)))


def test_schedule_pushes_on_multiples_of_push_every_from_push_start():
    pushes = [s.epoch for s in plan_schedule(40, push_start=15) if s.kind == "push"]
    assert pushes == [20, 30]
    default = plan_schedule(1000)  # settings.py: pushes at 10, 20, ..., 990
    assert sum(s.kind == "push" for s in default) == 99
    assert len(default) == 1000 + 99 * 21


def test_final_push_ends_the_schedule_with_projected_prototypes():
    stages = plan_schedule(13, last_layer_epochs=1, final_push=True)
    assert [(s.kind, s.epoch) for s in stages[-3:]] == [("joint", 12), ("push", 12),
                                                        ("last_layer", 12)]
    # epoch 10 of 11 is already a push epoch: no second push
    assert sum(s.kind == "push" for s in plan_schedule(11, final_push=True)) == 1


def test_non_finite_loss_raises_before_the_step_and_leaves_weights_untouched(
        tiny_model, toy_batches):
    set_phase(tiny_model, "joint")
    optimizer = build_optimizer(tiny_model, "joint").optimizer
    before = {name: p.detach().clone() for name, p in tiny_model.named_parameters()}
    with pytest.raises(NonFiniteLossError, match="step 0 of epoch 7") as raised:
        run_epoch(tiny_model, toy_batches, optimizer, LossCoefficients(cluster=math.inf),
                  train=True, device="cpu", epoch=7)
    assert raised.value.step == 0 and raised.value.epoch == 7
    assert math.isinf(raised.value.terms["total"])
    for name, parameter in tiny_model.named_parameters():
        assert torch.equal(parameter, before[name]), name


def test_evaluation_returns_sample_weighted_means_and_accuracy(tiny_model, toy_batches):
    stats = run_epoch(tiny_model, toy_batches, None, LossCoefficients(), train=False,
                      device="cpu")
    tiny_model.eval()
    totals, correct = {}, 0
    with torch.no_grad():
        for batch in toy_batches:
            output = tiny_model(batch["image"])
            terms = protopnet_loss(output, batch["label"], tiny_model)
            for name, value in terms.items():
                totals[name] = totals.get(name, 0) + value.item() * len(batch["label"])
            correct += (output.logits.argmax(1) == batch["label"]).sum().item()
    assert stats["loss"] == pytest.approx(totals["total"] / 11, rel=1e-5)
    assert stats["cluster"] == pytest.approx(totals["cluster"] / 11, rel=1e-5)
    assert stats["accuracy"] == pytest.approx(correct / 11)
