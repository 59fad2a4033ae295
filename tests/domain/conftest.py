"""Fixtures for the domain tests: the CDNOW summary shipped in data/ (see data/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

CDNOW_SUMMARY = Path(__file__).parent / "data" / "cdnow_customers_summary_with_transactions.csv"


@dataclass(frozen=True)
class Cdnow:
    """Per customer, in weeks: repeat purchases, recency, age; mean repeat spend in dollars."""

    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    age: NDArray[np.float64]
    monetary_value: NDArray[np.float64]


@pytest.fixture(scope="session")
def cdnow() -> Cdnow:
    table = np.loadtxt(CDNOW_SUMMARY, delimiter=",", skiprows=1)
    return Cdnow(table[:, 1], table[:, 2], table[:, 3], table[:, 4])
