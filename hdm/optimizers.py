"""Optimisers for mask parameters, by name.

All of them update every parameter element independently (their state is per element),
so optimising the masks of a batch together gives the same masks as optimising each
alone: the batched loss is a sum of per-sample losses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

OPTIMIZERS = ("adam", "sgd", "rmsprop", "rmsprop_tf")


class TFRMSprop(torch.optim.Optimizer):
    """RMSProp with TensorFlow 1's ``tf.train.RMSPropOptimizer`` semantics (no momentum).

    ``ms <- decay * ms + (1 - decay) * g^2`` with ``ms`` initialised to 1, and
    ``w <- w - lr * g / sqrt(ms + eps)``. NeuroMask's official code uses it with lr 0.03
    and TF's defaults ``decay=0.9``, ``eps=1e-10``. (PyTorch's RMSprop starts ``ms`` at 0
    and adds eps outside the root, which makes its first steps ~10x larger.)
    """

    def __init__(
        self, params: Any, lr: float = 0.001, decay: float = 0.9, eps: float = 1e-10
    ) -> None:
        super().__init__(params, {"lr": lr, "decay": decay, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "ms" not in state:
                    state["ms"] = torch.ones_like(p)
                ms = state["ms"]
                ms.mul_(group["decay"]).addcmul_(p.grad, p.grad, value=1 - group["decay"])
                p.addcdiv_(p.grad, (ms + group["eps"]).sqrt(), value=-group["lr"])


def make_optimizer(
    name: str, parameters: list[Tensor], lr: float, options: Mapping[str, Any] | None = None
) -> torch.optim.Optimizer:
    """``"adam"``, ``"sgd"``, ``"rmsprop"`` (PyTorch) or ``"rmsprop_tf"`` (:class:`TFRMSprop`)."""
    options = dict(options or {})
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, **options)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, **options)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=lr, **options)
    if name == "rmsprop_tf":
        return TFRMSprop(parameters, lr=lr, **options)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
