"""Test-split metrics: accuracy for single-label sets, per-class AUROC for multi-label ones."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from protoexplain.config import load_config
from protoexplain.evaluation import ScoreRecorder, classification_metrics, headline


class ScoresInTheImage(nn.Module):
    """A stand-in model whose logits are the pixels of its (B, 1, 1, K) images."""

    def forward(self, images):
        return SimpleNamespace(logits=images.flatten(1))


class Items(torch.utils.data.Dataset):
    def __init__(self, logits, labels, **attributes):
        self.logits, self.labels = logits, labels
        self.__dict__.update(attributes)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return {"image": self.logits[index][None, None], "label": self.labels[index]}


def _metrics(dataset, **options):
    config = load_config(None, ["data.eval_batch_size=4"])  # two batches of six items
    return classification_metrics(ScoresInTheImage(), dataset, config, torch.device("cpu"),
                                  progress=False, **options)


def test_accuracy_counts_the_largest_logit_per_class_and_overall():
    predicted = [0, 1, 1, 1, 2, 0]
    dataset = Items(torch.eye(3)[predicted], [0, 0, 1, 1, 2, 2], num_classes=3)
    metrics = _metrics(dataset)
    assert metrics == {"test_accuracy": pytest.approx(4 / 6),
                       "test_per_class_accuracy": [0.5, 1.0, 0.5], "test_samples": 6}
    assert set(_metrics(dataset, prefix="val")) == {"val_accuracy", "val_per_class_accuracy",
                                                    "val_samples"}


def test_a_multi_label_set_gets_the_auroc_of_each_named_class_and_their_mean():
    scores = torch.tensor([[0.9, 0.9], [0.1, 0.1], [0.8, 0.2], [0.2, 0.8]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    dataset = Items(scores, labels, num_classes=2, multi_label=True, classes=["mass", "nodule"])
    metrics = _metrics(dataset)
    assert metrics["test_per_class_auroc"] == {"mass": 1.0, "nodule": 0.0}
    assert metrics["test_auroc"] == pytest.approx(0.5)
    assert metrics["test_samples"] == 4 and "test_accuracy" not in metrics


def test_headline_names_the_metric_the_run_has():
    assert headline({"test_accuracy": 0.91234}) == "test accuracy 0.9123"
    assert headline({"test_auroc": 0.944}) == "test mean AUROC 0.9440"
    assert headline({"test_auroc": None}) == "test mean AUROC undefined"
    assert headline({"val_accuracy": 0.5}, prefix="val") == "val accuracy 0.5000"


def test_the_score_recorder_keeps_every_batch_and_returns_the_wrapped_loss():
    calls = []

    def loss_fn(output, labels, model, coefs):
        calls.append(coefs)
        return {"loss": output.logits.sum()}

    recorder = ScoreRecorder(loss_fn)
    first = recorder(SimpleNamespace(logits=torch.tensor([[2.0, -1.0]])),
                     torch.tensor([[1.0, 0.0]]), None, "c")
    recorder(SimpleNamespace(logits=torch.tensor([[-3.0, 4.0]])), torch.tensor([[0.0, 1.0]]),
             None, "c")
    assert float(first["loss"]) == 1.0 and calls == ["c", "c"]
    summary = recorder.auroc(["a", "b"])
    assert summary.per_class == (1.0, 1.0) and summary.mean == 1.0
