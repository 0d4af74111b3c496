"""Ground-truth fields derived from masks, shared by every data set with exact masks.

Conventions (the data set contract): pixel (row y, column x) has coordinates (x, y) at its
centre; boxes are (y0, y1, x0, x1) in pixels, end-exclusive, as in ProtoPNet's crop
convention (``img[y0:y1, x0:x1]``).
"""

from __future__ import annotations

import torch


def keypoints_from_masks(part_masks: torch.Tensor) -> torch.Tensor:
    """Centre of each part's pixels.

    part_masks: bool (N, H, W). Returns float32 (N, 3): x, y (mean column and row of the
    part's pixels) and visible (1 when the part has at least one pixel). Invisible parts
    get (0, 0, 0).
    """
    _, height, width = part_masks.shape
    weights = part_masks.to(torch.float32)
    counts = weights.sum(dim=(1, 2))
    rows = torch.arange(height, dtype=torch.float32, device=part_masks.device)
    columns = torch.arange(width, dtype=torch.float32, device=part_masks.device)
    x = (weights.sum(dim=1) * columns).sum(dim=1) / counts.clamp(min=1.0)
    y = (weights.sum(dim=2) * rows).sum(dim=1) / counts.clamp(min=1.0)
    visible = (counts > 0).to(torch.float32)
    return torch.stack([x, y, visible], dim=1)


def box_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Tight box around a bool mask (H, W): float32 (1, 4) as (y0, y1, x0, x1),
    end-exclusive; (0, 4) when the mask is empty."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    columns = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=mask.device)
    box = torch.stack([rows[0], rows[-1] + 1, columns[0], columns[-1] + 1])
    return box.to(torch.float32).unsqueeze(0)
