"""NeuroMask (Alzantot, Widdicombe, Julier & Srivastava, arXiv:1908.04389, 2019).

Follows the official code (github.com/nesl/neuromask, ``neuromask.py``):

- one full-resolution mask per image, ``m = sigmoid(w / T)``, ``w`` drawn uniformly in
  ``[-weight_limit, weight_limit]``;
- the masked image is ``x * m`` (zero baseline);
- loss ``= lambda_pred * CE(f(x * m), target) + lambda_sparse * mean|w + weight_limit|
  + lambda_smooth * mean((Laplacian * w)^2)`` with a 5x5 (3x3 for CIFAR) Laplacian; the
  official code convolves 'VALID', which never smooths the border, here the border is
  replicated so that it is smoothed too (:class:`hdm.regularizers.LaplacianSmoothness`);
- TensorFlow's RMSProp with learning rate 0.03; the map is the final mask.

Defaults are the code's class defaults (``temp=0.3``, ``coeffs=(50, 16, 3)``, 5x5 kernel,
``explain(iters=1000)``). Its CIFAR-10 demo uses ``temperature=1``,
``weights=(0.4, 0.35, 0.15)``, ``laplacian_size=3`` and 2000 steps.
The official code explains the model's predicted class unless told a target; here the
target is always given (pass the predicted class to reproduce it). With a callable
target the cross-entropy is the binary one on the callable's score (see
:meth:`hdm.targets.Target.log_probability`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hdm.base import Explainer
from hdm.constraints import Sigmoid
from hdm.engine import MaskOptimizer
from hdm.fidelity import Fidelity
from hdm.perturbation import BASELINES, make_baseline
from hdm.regularizers import LaplacianSmoothness, ParameterSparsity
from hdm.targets import Target


class NeuroMask(Explainer):
    """Full-resolution mask keeping the prediction, sparse and smooth.

    Args:
        model: images -> output.
        steps: optimisation steps.
        lr: learning rate.
        optimizer: ``"rmsprop_tf"`` (as the official code) or another name from
            :mod:`hdm.optimizers`.
        temperature: ``T`` in ``sigmoid(w / T)``.
        weight_limit: initial ``w`` is uniform in ``[-weight_limit, weight_limit]`` and the
            sparsity term is ``mean|w + weight_limit|``.
        weights: ``(lambda_pred, lambda_sparse, lambda_smooth)``.
        laplacian_size: 5 (ImageNet setting) or 3 (CIFAR setting).
        baseline: ``"zero"`` as the official code (``x * m``), or ``"mean"`` / ``"blur"``.
        blur_sigma: sigma of the ``"blur"`` baseline.
        fidelity: ``"cross_entropy"`` as the official code, or another kind of
            :class:`hdm.fidelity.Fidelity` (``"abs"``, ``"squared"``, ``"drop"``).
        fidelity_normalization: the unit of the non-cross-entropy kinds (``"none"``,
            ``"reference"``, ``"evidence"``; see :class:`hdm.fidelity.Fidelity`).
        seed: seed of the random initial mask (shared by all samples of a batch).
        mixed_precision: bfloat16 autocast of the model on CUDA or the CPU (off by default:
            not yet validated on a GPU; docs/performance.md).
        compile: ``torch.compile`` the masked forward (blend and model): ``True`` or a
            name in :data:`hdm.engine.COMPILE_SETTINGS`; off by default
            (:class:`hdm.engine.MaskOptimizer`).
        progress: tqdm bar over steps.
    """

    def __init__(
        self,
        model: Callable[[Tensor], Any],
        *,
        steps: int = 1000,
        lr: float = 0.03,
        optimizer: str = "rmsprop_tf",
        temperature: float = 0.3,
        weight_limit: float = 10.0,
        weights: tuple[float, float, float] = (50.0, 16.0, 3.0),
        laplacian_size: int = 5,
        baseline: str = "zero",
        blur_sigma: float = 10.0,
        fidelity: str = "cross_entropy",
        fidelity_normalization: str = "none",
        seed: int | None = 0,
        mixed_precision: bool = False,
        compile: bool | str = False,
        progress: bool = False,
    ) -> None:
        super().__init__(model, progress=progress)
        if baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
        prediction, sparsity, smoothness = weights
        self.optimization = MaskOptimizer(
            grid_sizes=(None,),
            steps=steps,
            constraint=Sigmoid(temperature),
            init=(-weight_limit, weight_limit),
            fidelity=Fidelity(fidelity, fidelity_normalization),
            fidelity_weight=prediction,
            regularizers=(
                ParameterSparsity(sparsity, offset=weight_limit),
                LaplacianSmoothness(smoothness, kernel_size=laplacian_size, on="parameters"),
            ),
            optimizer=optimizer,
            lr=lr,
            mixed_precision=mixed_precision,
            compile=compile,
        )
        self.baseline = baseline
        self.blur_sigma = blur_sigma
        self.seed = seed

    def explain(self, images: Tensor, target: Target) -> Tensor:
        baseline = make_baseline(images, self.baseline, self.blur_sigma)
        reference = self.reference_scores(images, target)
        generator = torch.Generator(device=images.device)
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)
        result = self.optimization.run(
            self.model,
            images,
            baseline,
            target,
            reference,
            generator=generator,
            progress=self.progress,
            description="NeuroMask",
        )
        return result.masks[0]
