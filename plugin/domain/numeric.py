"""Small numeric helpers shared by the models."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def dot(left: NDArray[np.float64], right: NDArray[np.float64]) -> float:
    """Sum of products of two 1-d arrays, without BLAS.

    `left @ right` goes to OpenBLAS, whose threads spin for the CPU: on a busy 2-core machine
    one 50,000-long dot product took 13 ms instead of 0.03 ms. einsum stays in one thread.
    """
    return float(np.einsum("i,i->", left, right))
