"""The reason behind each of a customer's tags: which figure crossed which threshold, in words.

Amounts are in the shop's currency (written without a symbol), days are whole days. Under
confidence "rules" the P(alive) and predicted-value reasons say the figure is a rule, not a
model's prediction.

Each formatter reads `c.<column>[i]` from either the ShopScores arrays (one customer) or the
distinct values of the columns it quotes, as Python lists (every customer: `reason_texts`, which
writes each distinct text once: customers share most of them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from plugin.domain.flags import (
    FLAGS,
    days,
    days_beyond,
    days_shown,
    money,
    money_below,
    percent,
    percent_below,
    rhythm_rule_days,
    whole_days,
    written_amount,
)
from plugin.domain.scoring_types import CONFIDENCE_RULES, ScoringSettings
from plugin.domain.segments import SEGMENTS, segment_rule

if TYPE_CHECKING:
    from plugin.domain.scoring import ShopScores

Formatter = Callable[[Any, int], str]
_COLUMNS = (
    "segment",
    "recency_score",
    "frequency_score",
    "orders",
    "days_since_last_order",
    "predicted_clv",
    "trailing_12m_spend",
    "mean_days_between_orders",
    "p_alive",
    "reorder_product_id",
    "reorder_last_day",
    "reorder_interval_days",
    "reorder_units",
    "recent_mean_spend",
    "earlier_mean_spend",
)


class _Lists:
    """The columns the reasons quote (arrays or Python lists), plus the run's context."""

    def __init__(self, scores: ShopScores, columns: dict[str, Any]) -> None:
        self.__dict__.update(columns)
        self.settings: ScoringSettings = scores.settings
        self.confidence = scores.models.confidence
        self.repeat_model = scores.models.repeat_model
        self.top_clv_threshold = scores.reference.top_clv_threshold
        self.as_of_day = scores.as_of_day

    def __getattr__(self, name: str) -> Any:  # the columns, set in __init__
        raise AttributeError(name)


def reasons_for(scores: ShopScores, i: int) -> dict[str, str]:
    """Tag -> reason, for each tag in `scores.tags(i)`."""
    context = _Lists(scores, {name: getattr(scores, name) for name in _COLUMNS})
    return {tag: _EXPLAIN.get(tag, _segment)(context, i) for tag in scores.tags(i)}


@dataclass(frozen=True)
class TagReasons:
    """One tag's reasons over a slice of customers: the customers (positions in the slice,
    ascending) who have the tag, and customer `customers[k]`'s reason `texts[text_of[k]]`."""

    customers: NDArray[np.intp]
    texts: list[str]
    text_of: NDArray[np.intp]


def all_reasons(
    scores: ShopScores, start: int = 0, stop: int | None = None
) -> list[dict[str, str]]:
    """`reasons_for` customers start..stop (default: all), in customer order.

    A slice at a time keeps a large shop's reasons (hundreds of MB of text) out of memory.
    """
    stop = len(scores) if stop is None else min(stop, len(scores))
    reasons: list[dict[str, str]] = [{} for _ in range(max(stop - start, 0))]
    for tag, given in reason_texts(scores, start, stop).items():
        texts = given.texts
        for i, k in zip(given.customers.tolist(), given.text_of.tolist(), strict=True):
            reasons[i][tag] = texts[k]
    return reasons


def reason_texts(
    scores: ShopScores, start: int = 0, stop: int | None = None
) -> dict[str, TagReasons]:
    """The reasons of customers start..stop tag by tag (in TAGS order, tags nobody has left
    out): the texts of `reasons_for`, each distinct one written once.

    Customers share a segment reason when they share the scores, the order count and the whole
    days since their last order (about 12,000 texts for a million customers), and a flag's
    reason when they share the figures it quotes (`_QUOTES`: a tier's reason for every customer
    with the same 12 months' spend).
    """
    stop = len(scores) if stop is None else min(stop, len(scores))
    part = slice(start, stop)
    given = _segment_reasons(scores, part)
    for flag in FLAGS:
        customers = np.flatnonzero(scores.flags[flag][part])
        if customers.size:
            given[flag] = _flag_reasons(scores, flag, part, customers)
    return given


def _segment_reasons(scores: ShopScores, part: slice) -> dict[str, TagReasons]:
    segment, since = scores.segment[part], scores.days_since_last_order[part]
    recency, frequency = scores.recency_score[part], scores.frequency_score[part]
    orders = scores.orders[part]
    given: dict[str, TagReasons] = {}
    for g in np.unique(segment).tolist():
        customers = np.flatnonzero(segment == g)
        firsts, text_of = _distinct(
            [
                recency[customers],
                frequency[customers],
                orders[customers],
                whole_days(since[customers]),
            ]
        )
        at = customers[firsts]
        texts = [
            _segment_text(g, r, f, o, d)
            for r, f, o, d in zip(
                recency[at].tolist(),
                frequency[at].tolist(),
                orders[at].tolist(),
                since[at].tolist(),
                strict=True,
            )
        ]
        given[SEGMENTS[g]] = TagReasons(customers, texts, text_of)
    return given


def _flag_reasons(
    scores: ShopScores, flag: str, part: slice, customers: NDArray[np.intp]
) -> TagReasons:
    """The flag's reason for each of `customers`, written once per distinct set of the figures
    it quotes: the formatter sees only those (reading another one raises AttributeError)."""
    quoted = [getattr(scores, name)[part][customers] for name in _QUOTES[flag]]
    keys = _KEYS.get(flag)
    firsts, text_of = _distinct(quoted if keys is None else keys(scores.settings, *quoted))
    context = _Lists(
        scores,
        {name: column[firsts].tolist() for name, column in zip(_QUOTES[flag], quoted, strict=True)},
    )
    explain = _EXPLAIN[flag]
    return TagReasons(customers, [explain(context, k) for k in range(firsts.size)], text_of)


def _distinct(columns: list[NDArray[Any]]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Rows of the aligned columns that differ: the first row of each distinct one, and for
    each row the number of its distinct one (a NaN is distinct from every value, itself too)."""
    if len(columns) == 1:
        _, firsts, text_of = np.unique(columns[0], return_index=True, return_inverse=True)
        return firsts.astype(np.intp), text_of.reshape(-1).astype(np.intp)
    order = np.lexsort(columns[::-1])
    opens = np.zeros(order.size, dtype=np.bool_)
    opens[:1] = True
    for column in columns:
        ordered = column[order]
        opens[1:] |= ordered[1:] != ordered[:-1]
    text_of = np.empty(order.size, dtype=np.intp)
    text_of[order] = np.cumsum(opens) - 1
    return order[opens].astype(np.intp), text_of


def _segment(c: _Lists, i: int) -> str:
    return _segment_text(
        int(c.segment[i]),
        int(c.recency_score[i]),
        int(c.frequency_score[i]),
        int(c.orders[i]),
        float(c.days_since_last_order[i]),
    )


def _segment_text(segment: int, r: int, f: int, orders: int, since: float) -> str:
    return (
        f"Recency score {r} (last order {days(since)} ago) and frequency score {f} ({orders} "
        f"order{'s' if orders != 1 else ''}){_segment_suffix(segment)}"
    )


@cache
def _segment_suffix(segment: int) -> str:
    name = SEGMENTS[segment]
    return f"; {name} is {segment_rule(name)}, scores 1-5 by quintile within this shop."


def _top(c: _Lists, i: int) -> str:
    s = c.settings
    ruled = c.confidence == CONFIDENCE_RULES
    what = "value by rule (last 12 months' spend, pro rata)" if ruled else "value"
    return (
        f"Predicted {what} over the next {days(s.horizon_days)} is "
        f"{money(float(c.predicted_clv[i]))}, at or above {money(c.top_clv_threshold)}, the "
        f"lowest of this shop's top {percent(s.top_share)} of customers."
    )


def _vip(c: _Lists, i: int) -> str:
    return (
        f"Spent {money(float(c.trailing_12m_spend[i]))} in the last 12 months, at or above the "
        f"VIP threshold of {money(c.settings.tier_vip)}."
    )


def _insider(c: _Lists, i: int) -> str:
    s = c.settings
    return (
        f"Spent {money(float(c.trailing_12m_spend[i]))} in the last 12 months, at or above the "
        f"insider threshold of {money(s.tier_insider)} and below the VIP threshold of "
        f"{money(s.tier_vip)}."
    )


def _enthusiast(c: _Lists, i: int) -> str:
    return (
        f"Spent {money(float(c.trailing_12m_spend[i]))} in the last 12 months, more than nothing "
        f"and below the insider threshold of {money(c.settings.tier_insider)}."
    )


def _win_back(c: _Lists, i: int) -> str:
    s = c.settings
    since = float(c.days_since_last_order[i])
    if since >= s.win_back_days:
        return f"No order for {days(since)}, at least the {days(s.win_back_days)} set for win-back."
    gap = float(c.mean_days_between_orders[i])
    limit = float(rhythm_rule_days(np.array(gap), s))
    shown = float(days_beyond(np.array(since), np.array(limit)))
    return (
        f"No order for {days_shown(shown)}, more than {days(limit)}: "
        f"{s.win_back_rhythm_factor:g} x "
        f"this customer's usual {gap:.1f} days between orders (at least "
        f"{days(s.win_back_rhythm_min_days)})."
    )


def _churn(c: _Lists, i: int) -> str:
    s = c.settings
    alive = percent_below(float(c.p_alive[i]), s.churn_p_alive)
    if c.confidence == CONFIDENCE_RULES:
        return (
            f"By rule, {alive} of the way from the last order to the win-back point remains, "
            f"below {percent(s.churn_p_alive)} (too little data in this shop for a model)."
        )
    return (
        f"The chance this customer is still active is {alive}, below {percent(s.churn_p_alive)} "
        f"(repeat-purchase model {c.repeat_model})."
    )


def _reorder(c: _Lists, i: int) -> str:
    interval = float(c.reorder_interval_days[i])
    since = c.as_of_day - float(c.reorder_last_day[i])
    units = int(c.reorder_units[i])
    bought, per = (f"{units} units of product", " a unit") if units > 1 else ("product", "")
    return (
        f"Last bought {bought} {int(c.reorder_product_id[i])} {days(since)} ago; customers "
        f"who rebuy it do so every {days(interval)}{per} (median), and a reorder is due after "
        f"{days(c.settings.reorder_grace * units * interval)}."
    )


def _declining(c: _Lists, i: int) -> str:
    s = c.settings
    recent, earlier = float(c.recent_mean_spend[i]), float(c.earlier_mean_spend[i])
    ratio, average = percent(s.spend_declining_ratio), money(earlier)
    # the limit as the figures quoted make it, exactly: the recent mean must read below it
    limit = written_amount(ratio[:-1]) * written_amount(average) / 100
    return (
        f"The last {s.spend_recent_orders} orders averaged {money_below(recent, limit)}, below "
        f"{ratio} of the earlier orders' average of {average}."
    )


# The columns each flag's reason quotes; `_flag_reasons` writes one text per distinct set.
_QUOTES: dict[str, tuple[str, ...]] = {
    "top-20": ("predicted_clv",),
    "tier-enthusiast": ("trailing_12m_spend",),
    "tier-insider": ("trailing_12m_spend",),
    "tier-vip": ("trailing_12m_spend",),
    "win-back": ("days_since_last_order", "mean_days_between_orders"),
    "churn-risk": ("p_alive",),
    "reorder-due": (
        "reorder_product_id",
        "reorder_last_day",
        "reorder_interval_days",
        "reorder_units",
    ),
    "spend-declining": ("recent_mean_spend", "earlier_mean_spend"),
}


def _win_back_keys(
    settings: ScoringSettings, since: NDArray[np.float64], gap: NDArray[np.float64]
) -> list[NDArray[Any]]:
    """What `_win_back` writes depends on: the whole days since the last order, and past
    win_back_days nothing else (the rhythm branch quotes the gap, and the days as it writes
    them)."""
    lapsed = since >= settings.win_back_days
    shown = days_beyond(since, rhythm_rule_days(gap, settings))
    return [np.where(lapsed, whole_days(since), shown), lapsed, np.where(lapsed, 0.0, gap)]


# For a flag whose reason depends on less than the exact figures it quotes: the columns that
# tell its distinct texts apart, from the quoted ones.
_KEYS: dict[str, Callable[..., list[NDArray[Any]]]] = {"win-back": _win_back_keys}

_EXPLAIN: dict[str, Formatter] = {
    "top-20": _top,
    "tier-enthusiast": _enthusiast,
    "tier-insider": _insider,
    "tier-vip": _vip,
    "win-back": _win_back,
    "churn-risk": _churn,
    "reorder-due": _reorder,
    "spend-declining": _declining,
}
