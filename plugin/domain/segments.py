"""RFM quintile scores within a shop, and the eleven named segments.

Scores (1..5, 5 best), from the shop's own customers:
- R from the day of the last order (later is better), F from the number of orders, M from net
  spend.
- By mid-rank: n customers sorted by the value, a group of customers with one value takes the
  ranks lo + 1 .. hi (lo customers below it, hi at or below it), and all of them the score of
  its middle: percentile p = (lo + hi) / (2n), the middle of the group's span lo/n .. hi/n, and
  score 1 + floor(5p), i.e. p in [0, 0.2) scores 1, ..., [0.8, 1) scores 5 (a middle exactly on
  a quintile boundary takes the score above it). Without ties that is the customer's own
  quintile; a tied group across a boundary lands where its middle is, not at the bottom of
  its range: a whole shop with one value scores 3, the 40% who share the latest day score 5
  (middle at p = 0.8), a larger group there 4 (3 beyond 80%). Deterministic: nothing is broken
  at random or by customer id.
- Kept as cut points: cut point j is the largest value that scores j or less (an actual
  customer's value; just below the smallest value when no customer scores that low), and a
  score = 1 + the number of cut points strictly below the value. On the shop itself that gives
  the mid-rank scores exactly; a customer re-scored later against the stored cut points with a
  value between two of the population's gets the score of the one above. More spend never
  lowers M, and a later order never lowers R.
- R's cut points are days (not days ago): a customer re-scored a few days after the full run
  is compared with the population as it was, not with a population that aged meanwhile.

Segments, by R (rows) and F (columns), the usual RFM grid (M is published but not used):

    | R \\ F | 1              | 2                  | 3                  | 4         | 5         |
    |-------|----------------|--------------------|--------------------|-----------|-----------|
    | 5     | new            | potential-loyalist | potential-loyalist | champions | champions |
    | 4     | promising      | potential-loyalist | potential-loyalist | loyal     | loyal     |
    | 3     | about-to-sleep | about-to-sleep     | need-attention     | loyal     | loyal     |
    | 2     | hibernating    | hibernating        | at-risk            | at-risk   | cant-lose |
    | 1     | lost           | hibernating        | at-risk            | at-risk   | cant-lose |

In words: champions bought recently and often (R 5, F 4-5); loyal buy often and not long ago
(R 3-4, F 4-5); potential-loyalist are recent with a few orders (R 4-5, F 2-3); new made their
first orders very recently (R 5, F 1); promising recently (R 4, F 1); need-attention are middling
(R 3, F 3); about-to-sleep are fading after few orders (R 3, F 1-2); at-risk bought often but not
lately (R 1-2, F 3-4); cant-lose were among the most frequent but have not come back (R 1-2,
F 5); hibernating have been away with few orders (R 2, F 1-2, or R 1, F 2); lost bought once,
long ago (R 1, F 1).

F is the exception to the mid-rank rule: most of a shop ties on one order, and at the middle of
that group one-time buyers would score F 2 or 3 from 40% or 80% of the shop, which would leave
new, promising and lost (the first-order cells) empty in a typical shop. F's cut points are the
shop's 20th, 40th, 60th and 80th percentiles (the lower order statistic, an actual value):
customers tied on a cut point take the lower score, so a one-time buyer is always F 1
(`lower_quintile_edges`).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from plugin.domain.scoring_types import FloatArray

SEGMENTS: tuple[str, ...] = (
    "champions",
    "loyal",
    "potential-loyalist",
    "new",
    "promising",
    "need-attention",
    "about-to-sleep",
    "at-risk",
    "cant-lose",
    "hibernating",
    "lost",
)
QUINTILES = (0.2, 0.4, 0.6, 0.8)

_ROWS_R5_TO_R1 = (
    ("new", "potential-loyalist", "potential-loyalist", "champions", "champions"),
    ("promising", "potential-loyalist", "potential-loyalist", "loyal", "loyal"),
    ("about-to-sleep", "about-to-sleep", "need-attention", "loyal", "loyal"),
    ("hibernating", "hibernating", "at-risk", "at-risk", "cant-lose"),
    ("lost", "hibernating", "at-risk", "at-risk", "cant-lose"),
)
# SEGMENT_GRID[r - 1, f - 1] is the index into SEGMENTS of the segment for scores (r, f).
SEGMENT_GRID: NDArray[np.int8] = np.array(
    [[SEGMENTS.index(name) for name in row] for row in reversed(_ROWS_R5_TO_R1)], dtype=np.int8
)


def quintile_edges(values: ArrayLike) -> tuple[float, ...]:
    """The 4 cut points of the mid-rank quintile scores of `values` (module docstring).

    One sort, O(n log n): cut point j = the largest value whose mid-rank score is <= j, or the
    float just below the smallest value when none is.
    """
    array = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n = array.size
    if n == 0:
        return (0.0, 0.0, 0.0, 0.0)
    opens = np.empty(n, dtype=np.bool_)
    opens[0] = True
    np.not_equal(array[1:], array[:-1], out=opens[1:])
    below = np.flatnonzero(opens).astype(np.int64)  # lo: customers below each distinct value
    at_or_below = np.append(below[1:], n)  # hi
    scores = 1 + (5 * (below + at_or_below)) // (2 * n)  # 1 + floor(5p), in integers
    last = np.searchsorted(scores, np.arange(1, len(QUINTILES) + 1), side="right") - 1
    floor = float(np.nextafter(array[0], -np.inf))
    return tuple(float(array[below[k]]) if k >= 0 else floor for k in last.tolist())


def lower_quintile_edges(values: ArrayLike) -> tuple[float, ...]:
    """F's cut points: the 20/40/60/80th percentiles, each the lower order statistic (an
    actual value), so a group tied on a cut point takes the lower score (module docstring)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return tuple(float(v) for v in np.quantile(array, QUINTILES, method="lower"))


def score_higher_better(values: FloatArray, edges: tuple[float, ...]) -> NDArray[np.int8]:
    """1 + the number of edges strictly below each value (R from the last order day, F, M)."""
    below = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left")
    return (1 + below).astype(np.int8)


def segment_of(
    recency_score: NDArray[np.int8], frequency_score: NDArray[np.int8]
) -> NDArray[np.int8]:
    """The index into SEGMENTS of each customer's segment, from the grid above."""
    return SEGMENT_GRID[recency_score.astype(np.intp) - 1, frequency_score.astype(np.intp) - 1]


@cache
def segment_rule(segment: str) -> str:
    """The grid cells of a segment in words, e.g. "recency score 5 and frequency score 4-5"."""
    index = SEGMENTS.index(segment)
    cells = [(r + 1, f + 1) for r in range(5) for f in range(5) if SEGMENT_GRID[r, f] == index]
    by_r: dict[int, list[int]] = {}
    for r, f in cells:
        by_r.setdefault(r, []).append(f)
    # rows with the same frequency scores are merged: "recency score 4-5 and frequency score 2-3"
    by_f: dict[str, list[int]] = {}
    for r, fs in sorted(by_r.items(), reverse=True):
        by_f.setdefault(_span(fs), []).append(r)
    parts = [f"recency score {_span(rs)} and frequency score {fs}" for fs, rs in by_f.items()]
    return " or ".join(parts)


def _span(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"
