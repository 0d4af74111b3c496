"""Fidelity terms: how much the masked image must keep the target's score."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from hdm.targets import Target

FIDELITIES = ("abs", "squared", "drop", "cross_entropy")
NORMALIZATIONS = ("none", "reference", "evidence")


class Fidelity:
    """Per-sample loss that is small when the masked image keeps the target's score.

    Kinds (``s``: score of the masked image, ``s0``: score of the reference image):

    - ``"abs"``: ``|s - s0| / z`` (MDM's "activation consistency").
    - ``"squared"``: ``((s - s0) / z)^2``.
    - ``"drop"``: ``max(0, s0 - s) / z``: only a loss of score counts (a preservation
      game in the sense of Fong & Vedaldi 2017), so a mask is not forced to keep pixels
      whose removal raises the score.
    - ``"cross_entropy"``: ``-log p(target | masked image)``, NeuroMask's
      prediction-preserving loss (see :meth:`hdm.targets.Target.log_probability` for
      callable targets); it uses neither ``s0`` nor ``z``.

    Args:
        kind: one of the kinds above.
        normalize: the unit ``z``: ``"none"`` (``z = 1``, the score's own units),
            ``"reference"`` (``z = |s0|``) or ``"evidence"`` (``z = |s0 - s_b|`` with ``s_b``
            the score of the baseline image, i.e. the share of the evidence that masking
            removes; unlike ``|s0|`` it does not blow up for scores near zero). Normalised
            losses make the regulariser weights independent of the model's score scale.
    """

    def __init__(self, kind: str = "abs", normalize: str = "none") -> None:
        if kind not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {FIDELITIES}, got {kind!r}")
        if normalize not in NORMALIZATIONS:
            raise ValueError(
                f"fidelity normalization must be one of {NORMALIZATIONS}, got {normalize!r}"
            )
        self.kind = kind
        self.normalize = normalize

    @property
    def needs_baseline_score(self) -> bool:
        """Whether :meth:`__call__` needs the baseline image's score ``s_b``."""
        return self.kind != "cross_entropy" and self.normalize == "evidence"

    def __call__(
        self,
        target: Target,
        output: Any,
        reference: Tensor,
        baseline_score: Tensor | None,
        repeats: int,
    ) -> Tensor:
        """Loss ``(repeats * B,)``; ``reference`` and ``baseline_score`` are ``(B,)``."""
        if self.kind == "cross_entropy":
            return -target.log_probability(output, repeats)
        difference = target.score(output, repeats).float() - reference.float().repeat(repeats)
        if self.normalize == "reference":
            difference = difference / reference.float().abs().clamp_min(1e-6).repeat(repeats)
        elif self.normalize == "evidence":
            assert baseline_score is not None
            difference = difference / evidence_scale(reference, baseline_score, repeats)
        if self.kind == "abs":
            return difference.abs()
        if self.kind == "drop":
            return (-difference).clamp_min(0)
        return difference.pow(2)


def deletion_loss(
    deleted_scores: Tensor, reference: Tensor, baseline_score: Tensor, repeats: int
) -> Tensor:
    """Per-sample loss ``max(0, (s_d - s_b) / |s0 - s_b|)^2``: small when the image with
    the mask's region removed (score ``s_d``) keeps no more of the target's evidence than
    the baseline image (``s_b``); ``s0`` is the reference score. ``deleted_scores`` is
    ``(repeats * B,)``, ``reference`` and ``baseline_score`` are ``(B,)``."""
    remaining = deleted_scores.float() - baseline_score.float().repeat(repeats)
    return (remaining / evidence_scale(reference, baseline_score, repeats)).clamp_min(0).pow(2)


def evidence_scale(reference: Tensor, baseline_score: Tensor, repeats: int) -> Tensor:
    """``|s0 - s_b|`` (at least 1e-6) of each sample, repeated for ``repeats`` stacked copies:
    the unit of the ``"evidence"`` normalisation and of :func:`deletion_loss`."""
    return (reference.float() - baseline_score.float()).abs().clamp_min(1e-6).repeat(repeats)
