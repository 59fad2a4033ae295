"""The reason behind each of a customer's tags: which figure crossed which threshold, in words.

Amounts are in the shop's currency (written without a symbol), days are whole days. Under
confidence "rules" the P(alive) and predicted-value reasons say the figure is a rule, not a
model's prediction.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from plugin.domain.flags import days, money, percent, rhythm_rule_days
from plugin.domain.scoring_types import CONFIDENCE_RULES
from plugin.domain.segments import SEGMENTS, segment_rule

if TYPE_CHECKING:
    from plugin.domain.scoring import ShopScores


def reasons_for(scores: ShopScores, i: int) -> dict[str, str]:
    """Tag -> reason, for each tag in `scores.tags(i)`."""
    explain = {
        "top-20": _top,
        "tier-enthusiast": _tier,
        "tier-insider": _tier,
        "tier-vip": _tier,
        "win-back": _win_back,
        "churn-risk": _churn,
        "reorder-due": _reorder,
        "spend-declining": _declining,
    }
    reasons = {}
    for tag in scores.tags(i):
        reasons[tag] = explain[tag](scores, i) if tag in explain else _segment(scores, i)
    return reasons


def _ruled(scores: ShopScores) -> bool:
    return scores.models.confidence == CONFIDENCE_RULES


def _segment(scores: ShopScores, i: int) -> str:
    name = SEGMENTS[int(scores.segment[i])]
    r, f = int(scores.recency_score[i]), int(scores.frequency_score[i])
    orders = int(scores.orders[i])
    return (
        f"Recency score {r} (last order {days(float(scores.days_since_last_order[i]))} ago) and "
        f"frequency score {f} ({orders} order{'s' if orders != 1 else ''}); {name} is "
        f"{segment_rule(name)}, scores 1-5 by quintile within this shop."
    )


def _top(scores: ShopScores, i: int) -> str:
    s = scores.settings
    what = "value by rule (last 12 months' spend, pro rata)" if _ruled(scores) else "value"
    return (
        f"Predicted {what} over the next {days(s.horizon_days)} is "
        f"{money(float(scores.predicted_clv[i]))}, at or above "
        f"{money(scores.reference.top_clv_threshold)}, the lowest of this shop's top "
        f"{percent(s.top_share)} of customers."
    )


def _tier(scores: ShopScores, i: int) -> str:
    s = scores.settings
    spend = money(float(scores.trailing_12m_spend[i]))
    if scores.flags["tier-vip"][i]:
        return (
            f"Spent {spend} in the last 12 months, at or above the VIP threshold of "
            f"{money(s.tier_vip)}."
        )
    if scores.flags["tier-insider"][i]:
        return (
            f"Spent {spend} in the last 12 months, at or above the insider threshold of "
            f"{money(s.tier_insider)} and below the VIP threshold of {money(s.tier_vip)}."
        )
    return (
        f"Spent {spend} in the last 12 months, more than nothing and below the insider "
        f"threshold of {money(s.tier_insider)}."
    )


def _win_back(scores: ShopScores, i: int) -> str:
    s = scores.settings
    since = float(scores.days_since_last_order[i])
    if since >= s.win_back_days:
        return f"No order for {days(since)}, at least the {days(s.win_back_days)} set for win-back."
    gap = float(scores.mean_days_between_orders[i])
    limit = float(rhythm_rule_days(scores.mean_days_between_orders[i : i + 1], s)[0])
    return (
        f"No order for {days(since)}, more than {days(limit)}: {s.win_back_rhythm_factor:g} x "
        f"this customer's usual {gap:.1f} days between orders (at least "
        f"{days(s.win_back_rhythm_min_days)})."
    )


def _churn(scores: ShopScores, i: int) -> str:
    s = scores.settings
    alive = percent(float(scores.p_alive[i]))
    if _ruled(scores):
        return (
            f"By rule, {alive} of the way from the last order to the win-back point remains, "
            f"below {percent(s.churn_p_alive)} (too little data in this shop for a model)."
        )
    return (
        f"The chance this customer is still active is {alive}, below {percent(s.churn_p_alive)} "
        f"(repeat-purchase model {scores.models.repeat_model})."
    )


def _reorder(scores: ShopScores, i: int) -> str:
    interval = float(scores.reorder_interval_days[i])
    last = float(scores.reorder_last_day[i])
    since = scores.as_of_day - last
    return (
        f"Last bought product {int(scores.reorder_product_id[i])} {days(since)} ago; customers "
        f"who rebuy it do so every {days(interval)} (median), and a reorder is due after "
        f"{days(math.ceil(scores.settings.reorder_grace * interval))}."
    )


def _declining(scores: ShopScores, i: int) -> str:
    s = scores.settings
    recent, earlier = float(scores.recent_mean_spend[i]), float(scores.earlier_mean_spend[i])
    return (
        f"The last {s.spend_recent_orders} orders averaged {money(recent)}, below "
        f"{percent(s.spend_declining_ratio)} of the earlier orders' average of {money(earlier)}."
    )
