"""Other libraries' saliency methods, called like an ``hdm`` explainer, for the speed benchmark.

- TorchRay's extremal perturbation (Fong, Patrick & Vedaldi, "Understanding deep networks via
  extremal perturbations and smooth masks", ICCV 2019; ``pip install torchray``, which needs
  matplotlib): one image at a time (its API takes a ``1 x C x H x W`` input), one mask per
  area, ``max_iter`` steps of one forward and backward pass each (the ``"preserve"`` variant),
  so at ``areas=[a]`` and ``max_iter=n`` it makes the model passes of ``hdm.MDM`` with one
  grid and ``steps=n``.
- pytorch-grad-cam's Grad-CAM (``pip install grad-cam``): batched, one forward and backward
  pass (which also fills the parameters' gradients, as the library leaves them trainable),
  returned as a NumPy array (it moves the maps to the host and resizes them with OpenCV).

Both are optional: :func:`missing_peers` names the ones that are not installed, and the
benchmark says so instead of failing. ``pip install -e '.[bench]'`` installs them.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor, nn

from hdm.hooks import explaining

PEER_PACKAGES = {
    "TorchRay EP": ("torchray", "pip install torchray"),
    "pytorch-grad-cam": ("pytorch_grad_cam", "pip install grad-cam"),
}
"""Each peer's row name -> the module it needs and the command that installs it."""


def missing_peers() -> dict[str, str]:
    """Peers whose package is not installed: row name -> the pip command that installs it."""
    return {
        name: install
        for name, (module, install) in PEER_PACKAGES.items()
        if importlib.util.find_spec(module) is None
    }


class ExtremalPerturbation:
    """TorchRay's ``extremal_perturbation``, one image after another.

    Args:
        model: ``nn.Module`` images -> ``(B, K)`` logits (TorchRay reads ``output[:, target]``).
        max_iter: optimisation steps per image.
        area: the mask's target area (share of the image).
    """

    def __init__(self, model: nn.Module, *, max_iter: int, area: float = 0.1) -> None:
        self.model = model
        self.max_iter = max_iter
        self.area = area

    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """``(B, H, W)`` masks at the image's resolution."""
        from torchray.attribution.extremal_perturbation import extremal_perturbation

        maps = []
        # TorchRay freezes the parameters and leaves them frozen; explaining() restores them.
        with explaining(self.model):
            for image, target in zip(images, targets.tolist(), strict=True):
                masks, _ = extremal_perturbation(
                    self.model, image[None], target, areas=[self.area],
                    max_iter=self.max_iter, resize=True,
                )
                maps.append(masks[0, 0])
        return torch.stack(maps)


class PytorchGradCAM:
    """pytorch-grad-cam's ``GradCAM`` on ``layer`` for class-index targets.

    Args:
        model: ``nn.Module`` images -> ``(B, K)`` logits.
        layer: the module whose activations and gradients weigh the map.
    """

    def __init__(self, model: nn.Module, layer: nn.Module) -> None:
        self.model = model
        self.layer = layer

    def __call__(self, images: Tensor, targets: Tensor) -> Tensor:
        """``(B, H, W)`` maps (back on ``images.device``, as ours are)."""
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # As its documentation uses it: the model in eval mode with trainable parameters (its
        # backward pass reaches the input through them, and fills their .grad too).
        self.model.eval()
        with GradCAM(model=self.model, target_layers=[self.layer]) as cam:
            maps = cam(
                input_tensor=images,
                targets=[ClassifierOutputTarget(t) for t in targets.tolist()],
            )
        self.model.zero_grad(set_to_none=True)
        return torch.from_numpy(maps).to(images.device)
