"""Value constraints: how free mask parameters ``w`` become mask values in [0, 1]."""

from __future__ import annotations

from torch import Tensor


class Sigmoid:
    """``m = sigmoid(w / temperature)``; NeuroMask (Alzantot et al. 2019) uses T = 0.3.

    A low temperature makes masks closer to binary for the same parameter range.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def __call__(self, parameters: Tensor) -> Tensor:
        return (parameters / self.temperature).sigmoid()

    def inverse(self, masks: Tensor, eps: float = 1e-4) -> Tensor:
        """Parameters whose mask is ``masks`` (clipped to [eps, 1 - eps])."""
        return self.temperature * masks.clamp(eps, 1 - eps).logit()

    def project_(self, parameters: Tensor) -> None:
        """Sigmoid parameters are unconstrained: nothing to project."""


class Clamp:
    """``m = w`` with ``w`` projected onto [0, 1] after every step (projected gradient).

    Fong & Vedaldi (ICCV 2017) optimise mask values directly and clip them to [0, 1].
    """

    def __call__(self, parameters: Tensor) -> Tensor:
        return parameters.clamp(0, 1)

    def inverse(self, masks: Tensor) -> Tensor:
        return masks.clamp(0, 1)

    def project_(self, parameters: Tensor) -> None:
        parameters.clamp_(0, 1)


Constraint = Sigmoid | Clamp


def make_constraint(kind: str, temperature: float = 1.0) -> Constraint:
    """``"sigmoid"`` (with ``temperature``) or ``"clamp"``."""
    if kind == "sigmoid":
        return Sigmoid(temperature)
    if kind == "clamp":
        return Clamp()
    raise ValueError(f"constraint must be 'sigmoid' or 'clamp', got {kind!r}")
