"""XProtoNet through ProtoPNet's training phases with its own loss, and a short run end to
end."""

import copy

import pytest
import torch

from prototypes import (
    XProtoNetLossCoefficients,
    build_optimizer,
    localize,
    push_xprotonet,
    run_epoch,
    set_phase,
    xprotonet_loss,
)
from tests.prototypes.tiny_xprotonet import make_xprotonet, multi_label_batches


def _train(model, batches, phase):
    set_phase(model, phase)
    optimizer = build_optimizer(model, phase).optimizer
    return run_epoch(model, batches, optimizer, XProtoNetLossCoefficients(), train=True,
                     device="cpu", loss_fn=xprotonet_loss)


def _changed(before, after):
    return {name for name, value in after.items() if not torch.equal(value, before[name])}


def test_warm_up_trains_both_heads_and_prototypes_but_not_trunk_or_last_layer():
    model = make_xprotonet()
    before = copy.deepcopy(model.state_dict())
    stats = _train(model, multi_label_batches(), "warm")
    changed = _changed(before, model.state_dict())
    assert {"add_on_layers.feature.0.weight", "add_on_layers.occurrence.0.weight",
            "add_on_layers.occurrence.2.weight", "prototype_vectors"} <= changed
    assert not any(name.startswith("features.") for name in changed)
    assert "last_layer.weight" not in changed
    assert {"binary_cross_entropy", "cluster", "separation", "transformation",
            "occurrence_sparsity", "l1", "loss", "accuracy"} <= set(stats)


def test_joint_epochs_also_train_the_trunk_and_last_layer_epochs_only_the_last_layer():
    model = make_xprotonet()
    before = copy.deepcopy(model.state_dict())
    _train(model, multi_label_batches(), "joint")
    assert "features.0.weight" in _changed(before, model.state_dict())
    before = copy.deepcopy(model.state_dict())
    stats = _train(model, multi_label_batches(), "last_layer")
    assert _changed(before, model.state_dict()) == {"last_layer.weight"}
    assert "transformation" not in stats  # it cannot change the last layer


def test_multi_label_accuracy_counts_right_decisions_at_probability_one_half():
    model = make_xprotonet()
    batches = multi_label_batches()
    stats = run_epoch(model, batches, None, XProtoNetLossCoefficients(), train=False,
                      device="cpu", loss_fn=xprotonet_loss)
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(batch["image"]).logits for batch in batches])
    labels = torch.cat([batch["label"] for batch in batches])
    expected = ((logits > 0) == (labels > 0.5)).float().mean().item()
    assert stats["accuracy"] == pytest.approx(expected)


def test_short_run_lowers_the_loss_then_pushes_onto_positive_images_and_localizes():
    model = make_xprotonet(latent_activation="linear")
    batches = multi_label_batches()
    set_phase(model, "joint")
    optimizer = build_optimizer(model, "joint").optimizer
    losses = [run_epoch(model, batches, optimizer, XProtoNetLossCoefficients(), train=True,
                        device="cpu", loss_fn=xprotonet_loss)["binary_cross_entropy"]
              for _ in range(5)]
    assert losses[-1] < losses[0]
    records = push_xprotonet(model, batches)
    labels = torch.cat([batch["label"] for batch in batches])
    for record in records:
        assert labels[record.sample_index - 100, record.class_index] == 1
    images = torch.cat([batch["image"] for batch in batches])[:4]
    loc = localize(model, images, [0, 3, 5, 1], method="upsample")
    assert loc.maps.shape == (4, 16, 16) and loc.boxes.shape == (4, 4)
