"""hdm: learned-mask saliency for any differentiable image model.

``hdm.HDM(model, **options)(images, targets) -> (B, H, W)`` in [0, 1] on ``images.device``.
Methods: MDM, HDM, NeuroMask (learned masks, one batched engine: :mod:`hdm.engine`) and
the baselines SISE, GradCAM, RISE. ``targets`` are class indices ``(B,)`` or a callable
``output -> (B,)``. Saliency metrics live in :mod:`hdm.metrics`.
"""

from hdm import metrics
from hdm.base import Explainer
from hdm.engine import MaskOptimizer, MaskResult
from hdm.gradcam import GradCAM
from hdm.hierarchical import HDM
from hdm.mdm import MDM
from hdm.neuromask import NeuroMask
from hdm.rise import RISE
from hdm.sise import SISE
from hdm.targets import Target

METHODS: dict[str, type[Explainer]] = {
    "mdm": MDM,
    "hdm": HDM,
    "neuromask": NeuroMask,
    "sise": SISE,
    "gradcam": GradCAM,
    "rise": RISE,
}
"""Explainer classes by name, for configs."""

__all__ = [
    "GradCAM",
    "HDM",
    "MDM",
    "METHODS",
    "Explainer",
    "MaskOptimizer",
    "MaskResult",
    "NeuroMask",
    "RISE",
    "SISE",
    "Target",
    "metrics",
]
