"""Localization metrics with ground truth, for any prototype localization method.

One concept per module: :mod:`~protoexplain.metrics.parts` (part hits, consistency, stability;
Huang et al. 2023), :mod:`~protoexplain.metrics.relevance` (relevance and fidelity of the top
pixels; Xu-Darme et al. 2023), :mod:`~protoexplain.metrics.regions` (boxes, IoU, pointing
tolerance), :mod:`~protoexplain.metrics.sanity` (model randomisation; Adebayo et al. 2018),
:mod:`~protoexplain.metrics.prototype_parts` (each prototype's part, method-independent),
:mod:`~protoexplain.metrics.scores` (the score of a pair), :mod:`~protoexplain.metrics.cost`
(passes and seconds), :mod:`~protoexplain.metrics.pairs` (which images per prototype),
:mod:`~protoexplain.metrics.localization` (all of them for one method) and
:mod:`~protoexplain.metrics.registry` (every metric's name, direction and level).
"""

from protoexplain.metrics.localization import LocalizationSettings, evaluate_localization
from protoexplain.metrics.pairs import EvaluationPairs, build_pairs
from protoexplain.metrics.prototype_parts import PART_DEFINITIONS, find_prototype_parts
from protoexplain.metrics.registry import METRICS, Metric
from protoexplain.metrics.sanity import randomized_copy

__all__ = [
    "METRICS",
    "PART_DEFINITIONS",
    "EvaluationPairs",
    "LocalizationSettings",
    "Metric",
    "build_pairs",
    "evaluate_localization",
    "find_prototype_parts",
    "randomized_copy",
]
