"""`clvsync shop settings`: a shop's stored settings shown with every problem the jobs would
refuse in them (and the arguments that mend each), or changed, checked by the jobs' own checks
before anything is saved."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, fields
from typing import Any, NoReturn

import click
from sqlmodel import Session

from jobs.shop_settings import NOT_AN_OBJECT, readable_settings, shown_stored
from plugin.cli_database import load_command_settings, open_store, shop_or_fail
from plugin.domain.writeback import WritebackSettings
from plugin.store.models import Shop

DEFAULT_NAMESPACE = WritebackSettings.metafield_namespace
# settings whose value is text: `--set metafield_namespace=2024` means the text "2024"
TEXT_SETTINGS = frozenset(f.name for f in fields(WritebackSettings) if f.type == "str")


def _setting_value(key: str, raw: str) -> Any:
    """A JSON value (true, 60, {"win_back_days": 60}), or else the text itself (ltv-). A text
    setting takes the text as typed, unless it is quoted as a JSON string ("clv:")."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return raw
    return raw if key in TEXT_SETTINGS and not isinstance(value, str) else value


KNOWN_SETTINGS = frozenset(
    {"scoring", "schedule", "recommendations", *(f.name for f in fields(WritebackSettings))}
)


def _known_settings() -> str:
    return ", ".join(sorted(KNOWN_SETTINGS))


# the settings that are JSON objects of named values: `--set scoring.min_customers=1` sets one
SETTING_GROUPS = ("scoring", "schedule", "recommendations")


@dataclass(frozen=True)
class SettingProblem:
    """A stored value the jobs refuse: `setting` names it (tag_prefix, scoring.min_customers, a
    whole group for values wrong only together, or "" for settings that are not an object);
    `fix` is the arguments that mend it."""

    setting: str
    text: str
    fix: str


def shop_settings_problems(shop: Shop) -> list[SettingProblem]:
    """Every problem of the shop's stored settings at once, by the jobs' own checks, each value
    checked alone (the checks stop at a first problem) and then each group as a whole."""
    values = readable_settings(shop.settings)
    if values is None:
        return [SettingProblem("", NOT_AN_OBJECT, _reset_fix(shop))]
    problems: list[SettingProblem] = []
    for key, value in values.items():
        if key not in KNOWN_SETTINGS:
            text = f"unknown shop settings {key} (known: {_known_settings()})"
            problems.append(SettingProblem(key, text, f"--unset {key}"))
        elif key in SETTING_GROUPS and isinstance(value, dict):
            for name, item in value.items():
                problems += _value_problems(shop, f"{key}.{name}", {key: {name: item}}, item)
            if not any(p.setting.startswith(f"{key}.") for p in problems):
                problems += _value_problems(shop, key, {key: value}, value)
        else:
            problems += _value_problems(shop, key, {key: value}, value)
    return problems


def _value_problems(
    shop: Shop, setting: str, values: dict[str, Any], value: Any
) -> list[SettingProblem]:
    text = _refusal(shop, values)
    if text is None:
        return []
    return [SettingProblem(setting, text, _fix(shop, setting, value))]


def _refusal(shop: Shop, values: dict[str, Any]) -> str | None:
    """What the jobs' checks say of these settings (the shop's domain and the hint to run this
    command left off), or None if they take them."""
    from jobs.scheduler import ScheduleError, shop_schedule
    from jobs.shop_settings import (
        ShopSettingsError,
        WritebackError,
        recommendation_settings,
        scoring_settings,
        settings_fix_hint,
        shop_writeback_settings,
    )

    # a shop of these values alone, never added to the session
    alone = Shop(domain=shop.domain, installed_at=shop.installed_at, settings=json.dumps(values))
    try:
        shop_writeback_settings(alone)
        scoring_settings(alone)
        recommendation_settings(alone)
        shop_schedule(alone)
    except (WritebackError, ShopSettingsError, ScheduleError) as exc:
        text = str(exc).removesuffix(settings_fix_hint(shop.domain))
        return text.removeprefix(f"{shop.domain}: ")
    return None


def _fix(shop: Shop, setting: str, value: Any) -> str:
    """A value the checks take where one is plain (a separator after the tag prefix, a whole
    number for 3.0), else the setting back to its default, or the name to set."""
    candidate: Any = None
    if setting == "tag_prefix" and isinstance(value, str) and value.strip():
        candidate = value.strip() + ":"
    elif isinstance(value, float) and value.is_integer():
        candidate = int(value)
    if candidate is not None and _refusal(shop, _nested(setting, candidate)) is None:
        shown = candidate if isinstance(candidate, str) else json.dumps(candidate)
        return f"--set {shlex.quote(f'{setting}={shown}')}"
    if setting in SETTING_GROUPS and isinstance(value, dict):  # values wrong only together
        return f"--set {setting}.NAME=VALUE"
    if setting == "metafield_namespace":  # kept once pushed: a default would be refused
        return f"--set {setting}=VALUE"
    return f"--unset {setting}  (back to the default)"


def _reset_fix(shop: Shop) -> str:
    """The arguments that mend settings that are not an object: all back to the defaults, but
    a namespace the app has pushed under, which they no longer tell, is given again."""
    if shop.definitions_version == 0:
        return "--reset  (every setting back to its default)"
    return (
        "--reset --set metafield_namespace=VALUE  (every setting back to its default; VALUE: "
        f"the namespace the app has pushed its metafields under, {DEFAULT_NAMESPACE!r} unless "
        "it was changed)"
    )


def _nested(setting: str, value: Any) -> dict[str, Any]:
    group, dot, name = setting.partition(".")
    return {group: {name: value}} if dot else {setting: value}


def _problem_lines(domain: str, problems: list[SettingProblem]) -> str:
    lines = [f"{domain}: {len(problems)} problem(s) in the stored settings, refused by the jobs:"]
    for problem in problems:
        lines.append(
            f"  {problem.setting}: {problem.text}" if problem.setting else f"  {problem.text}"
        )
        lines.append(f"    fix: clvsync shop settings {domain} {problem.fix}")
    return "\n".join(lines)


def _touches(keys: list[str], problem: SettingProblem) -> bool:
    """The problem is in a value this command set or unset (or in a group one of them is in)."""
    return any(
        problem.setting == key
        or problem.setting.startswith(f"{key}.")
        or key.startswith(f"{problem.setting}.")
        for key in keys
    )


def _put(values: dict[str, Any], key: str, raw: str | None) -> None:
    """Set (or, with no raw value, unset) a top-level setting or a group's named one."""
    group, dot, name = key.partition(".")
    option = "--set" if raw is not None else "--unset"
    if not dot:
        if raw is None:
            values.pop(key, None)
        else:
            values[key] = _setting_value(key, raw)
        return
    if group not in SETTING_GROUPS or not name:
        raise click.BadParameter(
            f"{key!r}: only {', '.join(SETTING_GROUPS)} hold named values", param_hint=option
        )
    held = values.get(group, {})
    if not isinstance(held, dict):
        raise click.BadParameter(
            f'the stored "{group}" is not an object: --unset {group} first', param_hint=option
        )
    if raw is None:
        held.pop(name, None)
    else:
        held[name] = _setting_value(key, raw)
    if held:
        values[group] = held
    else:
        values.pop(group, None)


def _check_namespace_kept(shop: Shop, before: str | None, values: dict[str, Any]) -> None:
    """The metafield namespace is chosen before the first push: once the app has defined its
    customer metafields there (and segments, Flow and Shopify Email may filter on them), a new
    namespace would leave every value and definition behind under the old one. (`before` None:
    the stored settings could not be read, and the command was given it again.)"""
    after = values.get("metafield_namespace", DEFAULT_NAMESPACE)  # unset: the default's in force
    if before is not None and after != before and shop.definitions_version > 0:
        raise click.ClickException(
            f"metafield_namespace stays {before!r}: the app has already written its metafields "
            "and their definitions there, and segments or Flow may use them"
        )


def _refuse_unreadable(shop: Shop, changing: bool) -> NoReturn:
    """Settings that are not an object: shown (cut short) with the fix; a change to them is
    refused, as --set and --unset would have to drop what is stored to make one."""
    fix = f"clvsync shop settings {shop.domain} {_reset_fix(shop)}"
    if changing:
        raise click.ClickException(
            f"{shop.domain}: {NOT_AN_OBJECT} ({shown_stored(shop.settings)}): a change would "
            f"drop them, so none is made; start again from the defaults, with a --set for each "
            f"value to keep: {fix}"
        )
    click.echo(shown_stored(shop.settings))
    raise click.ClickException(_problem_lines(shop.domain, shop_settings_problems(shop)))


def _reset(shop: Shop, stored: dict[str, Any] | None, keys: list[str]) -> dict[str, Any]:
    """Every setting back to its default but the metafield namespace the app has pushed under
    (see _check_namespace_kept): kept, or, when the stored settings cannot be read, given again
    with --set; refused without it."""
    if shop.definitions_version == 0:
        return {}
    if stored is not None:
        kept = stored.get("metafield_namespace")
        return {} if kept is None else {"metafield_namespace": kept}
    if "metafield_namespace" not in keys:
        raise click.ClickException(
            f"{shop.domain}: metafield_namespace must stay the one the app has pushed its "
            f"metafields under, and {NOT_AN_OBJECT} ({shown_stored(shop.settings)}): give it "
            f"with the reset, clvsync shop settings {shop.domain} --reset --set "
            f"metafield_namespace=VALUE ({DEFAULT_NAMESPACE!r} unless it was changed)"
        )
    return {}


def _set_keys(to_set: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each KEY=VALUE as (KEY, VALUE); a BadParameter names one that is not."""
    pairs = []
    for item in to_set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--set")
        pairs.append((key.strip(), raw))
    return pairs


@click.command("settings")
@click.argument("domain")
@click.option(
    "--set",
    "to_set",
    multiple=True,
    metavar="KEY=VALUE",
    help="e.g. dry_run=true, scoring.min_customers=1",
)
@click.option("--unset", "to_unset", multiple=True, metavar="KEY", help="Back to the default.")
@click.option(
    "--reset",
    is_flag=True,
    help="Every setting back to its default (a pushed metafield_namespace is kept), then any "
    "--set on top; mends settings that are not a JSON object.",
)
def shop_settings(
    domain: str, to_set: tuple[str, ...], to_unset: tuple[str, ...], reset: bool
) -> None:
    """Show a shop's settings and every problem the jobs would refuse in them, or change them
    (checked before anything is saved): tag_prefix, dry_run, bulk_threshold, metafield_namespace,
    scoring {...}, schedule {...}, recommendations {...}; one named value of a group is
    group.NAME."""
    if reset and to_unset:
        raise click.BadParameter("--reset already puts every setting back", param_hint="--unset")
    pairs = _set_keys(to_set)
    with open_store(load_command_settings()) as engine, Session(engine) as session, session.begin():
        shop = shop_or_fail(session, domain, param_hint="DOMAIN")
        stored = readable_settings(shop.settings)
        if stored is None and not reset:
            _refuse_unreadable(shop, changing=bool(to_set or to_unset))
        keys = [key for key, _ in pairs]
        values = _reset(shop, stored, keys) if reset else dict(stored or {})
        namespace = (stored or {}).get("metafield_namespace", DEFAULT_NAMESPACE)
        before = shop_settings_problems(shop)
        for key, raw in pairs:
            _put(values, key, raw)
        for key in to_unset:
            # a name stored before names were checked can still be unset: that cleans it up
            if key.partition(".")[0] not in KNOWN_SETTINGS and key not in values:
                raise click.BadParameter(
                    f"unknown shop setting {key!r} (known: {_known_settings()})",
                    param_hint="--unset",
                )
            keys.append(key)
            _put(values, key, None)
        shop.settings = json.dumps(values, sort_keys=True)
        problems = shop_settings_problems(shop)
        # Values an older release stored and this one refuses may stay while others are mended
        # one at a time; a value this command gives, or a new problem, is never stored.
        refused = [p for p in problems if p not in before or _touches(keys, p)]
        if refused:
            # raising rolls the change back
            raise click.ClickException("; ".join(f"{p.setting}: {p.text}" for p in refused))
        _check_namespace_kept(shop, None if stored is None else namespace, values)
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        report = _problem_lines(shop.domain, problems)
    if problems:  # told once the change is saved: the values left are the older release's
        raise click.ClickException(report)
