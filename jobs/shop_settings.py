"""A shop's stored settings as the jobs take them: its JSON read into the scoring, write-back and
recommendation settings, or an error naming the wrong value and the command that lists every
problem of them with its fix (`clvsync shop settings SHOP`)."""

from __future__ import annotations

import json
import math
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from plugin.domain.recommendations import RecommendationSettings
from plugin.domain.scoring import ScoringSettings
from plugin.domain.writeback import WritebackSettings, WritebackSettingsError, writeback_settings
from plugin.store.models import Shop

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

RECOMMENDATIONS_KEY = "recommendations"
SHOWN_STORED_CHARS = 80  # of stored settings that are not an object, shown in an error
NOT_AN_OBJECT = "the stored settings are not a JSON object"


class ShopSettingsError(ValueError):
    """A shop's stored settings are not a JSON object, or name a threshold that does not exist,
    or a wrong value."""


# Here, beside the write-back settings' reader that raises it; the push, the undo and the
# reconcile raise it too.
class WritebackError(RuntimeError):
    """The shop cannot be pushed to: bad settings, no token, or a refused definition."""


def settings_fix_hint(domain: str) -> str:
    """What a job's error for a shop's stored settings ends with: the command that lists every
    problem of them with its fix (an upgrade's stricter checks can leave several at once)."""
    return f" (see every problem and its fix: clvsync shop settings {domain})"


def stored_settings(shop: Shop) -> dict[str, Any]:
    """The shop's stored settings, the JSON object every reader takes them as; a
    ShopSettingsError, showing what is stored, when they are not one (a row edited by hand, or
    a database restored from elsewhere): no reader guesses at what the shop meant."""
    values = readable_settings(shop.settings)
    if values is None:
        raise ShopSettingsError(
            f"{shop.domain}: {NOT_AN_OBJECT}: {shown_stored(shop.settings)}"
            + settings_fix_hint(shop.domain)
        )
    return values


def readable_settings(text: str | None) -> dict[str, Any] | None:
    """Stored settings text as its JSON object (none stored: no overrides), or None if it is
    not JSON or not an object."""
    try:
        values = json.loads(text or "{}")
    except (ValueError, RecursionError):  # not JSON; too many digits, or nested too deep
        return None
    return values if isinstance(values, dict) else None


def shown_stored(text: str) -> str:
    """Stored text for a message: quoted, and cut after SHOWN_STORED_CHARS characters (a
    repr, so that a control character cannot garble the terminal)."""
    if len(text) <= SHOWN_STORED_CHARS:
        return repr(text)
    return f"{text[:SHOWN_STORED_CHARS]!r}... ({len(text)} characters)"


def overridden(shop: Shop, key: str, defaults: T) -> T:
    """`defaults` with the overrides under `key` of the shop's settings; a ShopSettingsError
    names an unknown or badly valued one."""
    overrides = stored_settings(shop).get(key, {})
    what = {"scoring": "scoring", "recommendations": "recommendation"}.get(key, key)
    if not isinstance(overrides, dict):  # a list, a number, a string or null: no names to take
        raise ShopSettingsError(
            f'{shop.domain}: "{key}" must be a JSON object of {what} settings, e.g. '
            f'{key}={{"name": value}}, not {json.dumps(overrides)}' + settings_fix_hint(shop.domain)
        )
    known = {f.name for f in fields(defaults)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ShopSettingsError(
            f"{shop.domain}: unknown {what} settings {', '.join(unknown)}"
            + settings_fix_hint(shop.domain)
        )
    try:
        return replace(defaults, **overrides)
    except ValueError as exc:  # the settings' own checks, which say whose ("invalid scoring ...")
        raise ShopSettingsError(f"{shop.domain}: {exc}" + settings_fix_hint(shop.domain)) from None
    except TypeError as exc:
        raise ShopSettingsError(
            f"{shop.domain}: {what} settings: {exc}" + settings_fix_hint(shop.domain)
        ) from None


def scoring_settings(shop: Shop) -> ScoringSettings:
    """The shop's thresholds: the defaults, with the overrides in its settings' "scoring" key."""
    scoring = overridden(shop, "scoring", ScoringSettings())
    if not isinstance(scoring.candidate_models, tuple):  # JSON gives a list
        scoring = replace(scoring, candidate_models=tuple(scoring.candidate_models))
    return scoring


def recommendation_settings(shop: Shop) -> RecommendationSettings:
    """The shop's thresholds: the defaults, with the overrides in its "recommendations" key; a
    ShopSettingsError names an unknown or badly valued one."""
    overrides = stored_settings(shop).get(RECOMMENDATIONS_KEY, {})
    problems = _type_problems(overrides) if isinstance(overrides, dict) else []
    if problems:
        raise ShopSettingsError(
            f"{shop.domain}: recommendation settings: {'; '.join(problems)}"
            + settings_fix_hint(shop.domain)
        )
    return overridden(shop, RECOMMENDATIONS_KEY, RecommendationSettings())


def _type_problems(overrides: dict[str, Any]) -> list[str]:
    """A count must be a whole number and any other threshold a finite number, checked before
    the settings' own range checks, which compare numbers only ("x" < 1 raised TypeError)."""
    types = {f.name: f.type for f in fields(RecommendationSettings)}  # "int" or "float"
    problems = []
    for name, value in overrides.items():
        if types.get(name) == "int" and not _is_count(value):
            problems.append(f"{name} must be a whole number, not {json.dumps(value)}")
        elif types.get(name) == "float" and not _is_finite(value):
            problems.append(f"{name} must be a finite number, not {json.dumps(value)}")
    return problems


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def shop_writeback_settings(shop: Shop) -> WritebackSettings:
    """The shop's write-back settings; a WritebackError (what the push, the undo and the
    reconcile raise and their callers take) names a bad one, or settings that cannot be read."""
    try:
        values = stored_settings(shop)
    except ShopSettingsError as exc:
        raise WritebackError(str(exc)) from None
    try:
        return writeback_settings(values)
    except (WritebackSettingsError, TypeError) as exc:
        raise WritebackError(
            f"{shop.domain}: write-back settings: {exc}" + settings_fix_hint(shop.domain)
        ) from None
