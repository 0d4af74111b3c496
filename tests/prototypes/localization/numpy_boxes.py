"""The original ProtoPNet's high-activation box computed directly with NumPy, for comparisons."""

import numpy as np


def direct_box(activation: np.ndarray, percentile: float = 95) -> tuple[int, int, int, int]:
    """Bounding box (end-exclusive) of the pixels >= the map's NumPy percentile."""
    mask = activation >= np.percentile(activation, percentile)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
