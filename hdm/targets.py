"""What to explain: turn ``targets`` into a score for every sample.

``targets`` is either a LongTensor ``(B,)`` of class indices into the last dimension of
the model's ``(B, K)`` output (or of ``output.logits`` when the output is an object), or
a callable ``output -> Tensor (B,)`` that receives the model's raw output for a batch of
exactly the ``B`` images being explained (e.g. a ProtoPNet prototype's similarity
``lambda out: out.similarities[torch.arange(B), prototype_ids]``).

Explainers often push ``R`` perturbed copies of the batch through the model in one call
(``R * B`` images, ordered copy-major: rows ``r*B .. r*B + B - 1`` are copy ``r``). A
:class:`Target` scores such a stacked output: index targets are repeated, and a callable is
called once per copy on the output sliced back to ``B`` rows (see :func:`slice_output`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

ScoreFunction = Callable[[Any], Tensor]
Targets = Tensor | ScoreFunction


def slice_output(output: Any, start: int, stop: int, rows: int) -> Any:
    """Rows ``start:stop`` of a model output whose tensors have ``rows`` rows.

    Handles tensors, mappings, lists, tuples (named or not), dataclasses and plain
    objects (attributes in ``__dict__``); tensors whose first dimension is not ``rows``
    (e.g. parameters such as prototype vectors) and other values are passed unchanged.
    """
    if isinstance(output, Tensor):
        return output[start:stop] if output.dim() > 0 and output.shape[0] == rows else output
    if isinstance(output, Mapping):
        return type(output)({k: slice_output(v, start, stop, rows) for k, v in output.items()})
    if isinstance(output, tuple) and hasattr(output, "_fields"):
        return type(output)(*(slice_output(v, start, stop, rows) for v in output))
    if isinstance(output, (list, tuple)):
        return type(output)(slice_output(v, start, stop, rows) for v in output)
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        changes = {
            f.name: slice_output(getattr(output, f.name), start, stop, rows)
            for f in dataclasses.fields(output)
            if f.init
        }
        return dataclasses.replace(output, **changes)
    if hasattr(output, "__dict__"):
        sliced = copy.copy(output)
        for name, value in vars(output).items():
            setattr(sliced, name, slice_output(value, start, stop, rows))
        return sliced
    return output


def class_logits(output: Any) -> Tensor:
    """The ``(N, K)`` class scores of a model output: the output itself or ``output.logits``."""
    logits = output if isinstance(output, Tensor) else getattr(output, "logits", None)
    if not isinstance(logits, Tensor) or logits.dim() != 2:
        raise TypeError(
            "targets given as class indices need a model output that is a (B, K) Tensor or "
            f"has a (B, K) `.logits` Tensor; got {type(output).__name__}. "
            "Pass a callable target (output -> Tensor (B,)) instead."
        )
    return logits


class Target:
    """Scores of the targets to explain, for stacked outputs of ``repeats * B`` rows.

    Args:
        targets: LongTensor ``(B,)`` of class indices, or a callable ``output -> (B,)``.
        batch_size: ``B``, the number of images explained.
        device: where index targets must live (the images' device).
    """

    def __init__(self, targets: Targets, batch_size: int, device: torch.device) -> None:
        self.batch_size = batch_size
        if isinstance(targets, Tensor):
            if (
                targets.dtype in (torch.bool,)
                or targets.is_floating_point()
                or targets.is_complex()
            ):
                raise TypeError(
                    f"targets must be an integer tensor of class indices, got {targets.dtype}"
                )
            if targets.shape != (batch_size,):
                raise ValueError(
                    f"targets must have shape ({batch_size},) to match the images; "
                    f"got {tuple(targets.shape)}"
                )
            self.indices: Tensor | None = targets.to(device=device, dtype=torch.long)
            self.function: ScoreFunction | None = None
        elif callable(targets):
            self.indices = None
            self.function = targets
        else:
            raise TypeError(
                "targets must be a LongTensor (B,) of class indices or a callable "
                "output -> Tensor (B,); "
                f"got {type(targets).__name__}"
            )

    @property
    def is_index(self) -> bool:
        """Whether the targets are class indices (else a callable)."""
        return self.indices is not None

    def check(self, output: Any) -> None:
        """Validate the targets against one model output for the unperturbed batch."""
        if self.indices is not None:
            logits = class_logits(output)
            if logits.shape[0] != self.batch_size:
                raise ValueError(
                    f"model output has {logits.shape[0]} rows for {self.batch_size} images"
                )
            if self.batch_size and (
                self.indices.min() < 0 or self.indices.max() >= logits.shape[1]
            ):
                raise ValueError(
                    f"target class indices must lie in [0, {logits.shape[1]}); "
                    f"got {self.indices.tolist()}"
                )
        else:
            self.score(output)

    def score(self, output: Any, repeats: int = 1) -> Tensor:
        """The raw score ``(repeats * B,)``: the class logit, or the callable's value."""
        if self.indices is not None:
            logits = class_logits(output)
            return logits.gather(1, self.indices.repeat(repeats)[:, None]).squeeze(1)
        return self._call(output, repeats)

    def probability(self, output: Any, repeats: int = 1) -> Tensor:
        """Softmax probability of the class for index targets; a callable's value as given."""
        if self.indices is not None:
            probabilities = class_logits(output).softmax(dim=1)
            return probabilities.gather(1, self.indices.repeat(repeats)[:, None]).squeeze(1)
        return self._call(output, repeats)

    def log_probability(self, output: Any, repeats: int = 1) -> Tensor:
        """Log-probability of the target, the negative of a cross-entropy.

        Index targets: ``log_softmax(logits)[target]`` (multi-class cross-entropy). A callable's
        score ``s`` is read as the logit of a binary "target present" decision, ``log σ(s)``
        (the two-way softmax of ``[s, 0]``), since a single score has no class distribution.
        """
        if self.indices is not None:
            log_probabilities = F.log_softmax(class_logits(output), dim=1)
            return log_probabilities.gather(1, self.indices.repeat(repeats)[:, None]).squeeze(1)
        return F.logsigmoid(self._call(output, repeats))

    def _call(self, output: Any, repeats: int) -> Tensor:
        assert self.function is not None
        if repeats == 1:
            return self._checked(self.function(output))
        rows = repeats * self.batch_size
        parts = [
            self._checked(
                self.function(
                    slice_output(output, r * self.batch_size, (r + 1) * self.batch_size, rows)
                )
            )
            for r in range(repeats)
        ]
        return torch.cat(parts)

    def _checked(self, score: Any) -> Tensor:
        if not isinstance(score, Tensor) or score.shape != (self.batch_size,):
            shape = tuple(score.shape) if isinstance(score, Tensor) else type(score).__name__
            raise ValueError(
                f"a callable target must return a Tensor of shape ({self.batch_size},); got {shape}"
            )
        return score
