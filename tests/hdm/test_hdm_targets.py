"""Targets: class indices and callables on arbitrary model outputs."""

from __future__ import annotations

import dataclasses
from collections import namedtuple

import pytest
import torch

import hdm
from hdm.targets import Target, slice_output
from tests.hdm.hdm_methods import QUICK, build
from tests.hdm.hdm_models import PrototypeLikeModel

# Index targets score the logit; RISE and SISE weigh masks by the logit too when
# ``softmax=False``; NeuroMask's cross-entropy needs class logits, so the comparison uses
# its score-based fidelity.
SCORE_OPTIONS = {
    "rise": {"softmax": False},
    "sise": {"softmax": False},
    "neuromask": {"fidelity": "abs"},
}


@pytest.mark.parametrize("name", sorted(QUICK))
def test_index_and_callable_targets_give_the_same_map_for_the_same_score(name, small_cnn, images):
    indices = torch.tensor([2, 0, 4])
    explainer = build(QUICK, name, small_cnn, **SCORE_OPTIONS.get(name, {}))
    by_index = explainer(images, indices)
    by_callable = explainer(images, lambda out: out[torch.arange(3), indices])
    torch.testing.assert_close(by_index, by_callable, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", sorted(QUICK))
def test_callable_reads_a_prototype_score_from_an_output_object(name, images):
    torch.manual_seed(0)
    model = PrototypeLikeModel()
    prototype_ids = torch.tensor([5, 0, 3])
    explainer = build(QUICK, name, model, **SCORE_OPTIONS.get(name, {}))
    saliency = explainer(images, lambda out: out.similarities[torch.arange(3), prototype_ids])
    alone = explainer(
        images[1:2], lambda out: out.similarities[torch.arange(1), prototype_ids[1:2]]
    )
    assert saliency.shape == (3, 32, 32)
    torch.testing.assert_close(saliency[1:2], alone, atol=1e-4, rtol=0)


def test_index_targets_use_the_logits_field_of_an_output_object(images):
    torch.manual_seed(0)
    model = PrototypeLikeModel()
    classes = torch.tensor([0, 2, 1])
    by_index = hdm.GradCAM(model)(images, classes)
    by_callable = hdm.GradCAM(model)(images, lambda out: out.logits[torch.arange(3), classes])
    torch.testing.assert_close(by_index, by_callable)


def test_stacked_outputs_are_sliced_back_to_the_batch_for_each_copy():
    Pair = namedtuple("Pair", ["scores", "shared"])

    @dataclasses.dataclass
    class Output:
        logits: torch.Tensor
        extras: dict
        pair: Pair

    rows = torch.arange(6.0)
    shared = torch.ones(4, 2)  # not batch-shaped: passed through unchanged
    output = Output(rows[:, None], {"maps": rows[:, None, None]}, Pair(rows, shared))
    part = slice_output(output, 2, 4, rows=6)
    assert part.logits.flatten().tolist() == [2.0, 3.0]
    assert part.extras["maps"].flatten().tolist() == [2.0, 3.0]
    assert part.pair.scores.tolist() == [2.0, 3.0] and part.pair.shared is shared


def test_callable_target_is_called_once_per_stacked_copy():
    calls = []

    def score(out):
        calls.append(out.shape[0])
        return out[:, 0]

    target = Target(score, batch_size=2, device=torch.device("cpu"))
    stacked = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    assert target.score(stacked, repeats=3).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert calls == [2, 2, 2]


def test_index_targets_give_logit_probability_and_log_probability():
    logits = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    target = Target(torch.tensor([1, 0]), batch_size=2, device=torch.device("cpu"))
    torch.testing.assert_close(target.score(logits), torch.tensor([3.0, 0.0]))
    expected = torch.tensor([1 / (1 + torch.e**-2), 0.5])
    torch.testing.assert_close(target.probability(logits), expected)
    torch.testing.assert_close(target.log_probability(logits), expected.log())


def test_callable_log_probability_is_the_binary_cross_entropy_of_its_score():
    target = Target(lambda out: out[:, 0], batch_size=1, device=torch.device("cpu"))
    torch.testing.assert_close(
        target.log_probability(torch.tensor([[2.0]])), torch.tensor([2.0]).sigmoid().log()
    )


@pytest.mark.parametrize(
    ("targets", "error", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer"),
        (torch.tensor([0, 1]), ValueError, r"shape \(3,\)"),
        (torch.tensor([0, 1, 7]), ValueError, r"lie in \[0, 5\)"),
        ("cat", TypeError, "LongTensor"),
        (lambda out: out[:, 0:2], ValueError, r"shape \(3,\)"),
    ],
)
def test_bad_targets_are_rejected_with_a_clear_message(small_cnn, images, targets, error, message):
    with pytest.raises(error, match=message):
        hdm.GradCAM(small_cnn)(images, targets)


def test_index_targets_need_logits_in_the_output(images):
    def model(x):
        return {"scores": x.mean(dim=(1, 2, 3))}

    with pytest.raises(TypeError, match="logits"):
        hdm.RISE(model, num_masks=4)(images, torch.tensor([0, 0, 0]))
