"""`clvsync shop settings`: a shop's stored settings shown with every problem the jobs would
refuse in them (and the arguments that mend each), or changed, checked by the jobs' own checks
before anything is saved."""

from __future__ import annotations

import difflib
import itertools
import json
import shlex
from collections.abc import Callable
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
WRITEBACK_DEFAULTS = {f.name: f.default for f in fields(WritebackSettings)}


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
    """A stored value the jobs refuse, or a name they ignore: `path` is where it is stored
    (("tag_prefix",), ("scoring", "min_customers"), a whole group for values refused only
    together, or () for settings that are not an object); `setting` names it for the reader;
    `fix` is the arguments that mend it, ready to paste into a shell."""

    setting: str
    text: str
    fix: str
    path: tuple[str, ...] = ()
    ignored: bool = False  # an unknown name: the jobs do not refuse it, they use the default
    together: bool = False  # the group's values, each taken alone, are refused together


Refusal = Callable[[dict[str, Any]], str | None]


def shop_settings_problems(shop: Shop) -> list[SettingProblem]:
    """Every problem of the shop's stored settings at once, by the jobs' own checks: each
    value is checked beside the other values of its group (the checks stop at a first problem,
    and some compare two values), then the values of each group not wrong in themselves are
    checked together, so that a change can never hide a problem the jobs would meet."""
    values = readable_settings(shop.settings)
    if values is None:
        return [SettingProblem("", NOT_AN_OBJECT, _reset_fix(shop))]
    refusal = _memoised_refusal(shop)
    problems: list[SettingProblem] = []
    for key, value in values.items():
        if key not in KNOWN_SETTINGS:
            problems.append(_unknown_problem(key, values))
        elif key in SETTING_GROUPS and isinstance(value, dict):
            problems += _group_problems(refusal, key, value)
        else:
            problems += _value_problems(refusal, (key,), value)
    return problems


def _memoised_refusal(shop: Shop) -> Refusal:
    """_refusal for this shop, remembered by the settings checked: a group's checks ask of
    the same values again."""
    seen: dict[str, str | None] = {}

    def refusal(values: dict[str, Any]) -> str | None:
        key = json.dumps(values, sort_keys=True)
        if key not in seen:
            seen[key] = _refusal(shop, values)
        return seen[key]

    return refusal


def _unknown_problem(key: str, values: dict[str, Any]) -> SettingProblem:
    """A name no setting has: the jobs ignore it, so what it meant is not in force (a typo of
    dry_run leaves the shop pushing for real). Its fix unsets it, which changes nothing the
    jobs do; the text names the setting it may have meant."""
    label = key if key.isidentifier() else json.dumps(key)
    text = f"unknown shop setting {label}, ignored by the jobs"
    group, dot, name = key.partition(".")
    close = difflib.get_close_matches(key, sorted(KNOWN_SETTINGS), n=1)
    if dot and group in SETTING_GROUPS:
        text += f": a value of {group} is set with --set {shlex.quote(f'{group}.{name}=VALUE')}"
    elif close and close[0] in SETTING_GROUPS:
        text += f": a typo of {close[0]}?"
    elif close:
        held = values.get(close[0], WRITEBACK_DEFAULTS[close[0]])
        whence = "as stored" if close[0] in values else "its default"
        text += f": a typo of {close[0]}? The jobs take {close[0]}={json.dumps(held)} ({whence})"
    else:
        text += f" (known: {_known_settings()})"
    return SettingProblem(label, text, f"--unset {shlex.quote(key)}", (key,), ignored=True)


def _group_problems(refusal: Refusal, group: str, held: dict[str, Any]) -> list[SettingProblem]:
    """The group's values refused together (listed first: its fix leaves the rest as they
    are, while a --set in a group whose values are refused together is refused), then each
    value wrong in itself."""
    wrong = _wrong_names(refusal, group, held)
    rest = {name: item for name, item in held.items() if name not in wrong}
    problems = _together_problems(refusal, group, held, rest, wrong)
    for name in wrong:
        problems += _value_problems(refusal, (group, name), held[name])
    return problems


def _wrong_names(refusal: Refusal, group: str, held: dict[str, Any]) -> list[str]:
    """The group's values the jobs refuse alone (over the defaults) and beside each other
    value stored with them: tier_insider 1000 is refused alone (tier_vip's default is 750),
    not beside tier_vip 2000. The jobs' checks compare at most two values with each other."""
    return [
        name
        for name, item in held.items()
        if refusal({group: {name: item}}) is not None
        and all(
            refusal({group: {name: item, other: held[other]}}) is not None
            for other in held
            if other != name
        )
    ]


def _together_problems(
    refusal: Refusal, group: str, held: dict[str, Any], rest: dict[str, Any], wrong: list[str]
) -> list[SettingProblem]:
    """The group's values that are not wrong in themselves, refused together (tier_insider 500
    over tier_vip 400): one problem, mended by unsetting the fewest of them."""
    text = refusal({group: rest})
    if text is None:
        return []
    names = _mending_unsets(refusal, group, held, rest, wrong)
    unsets = " ".join(f"--unset {shlex.quote(f'{group}.{name}')}" for name in names)
    fix = f"{unsets}  # back to the default, which the other values take"
    return [SettingProblem(group, text, fix, (group,), together=True)]


def _mending_unsets(
    refusal: Refusal, group: str, held: dict[str, Any], rest: dict[str, Any], wrong: list[str]
) -> tuple[str, ...]:
    """The fewest of `rest` (one or two, else all) whose unset leaves values the checks take
    together, and no other value wrong that was not already."""
    for size in (1, 2):
        for names in itertools.combinations(sorted(rest), size):
            kept = {name: item for name, item in rest.items() if name not in names}
            left = {name: item for name, item in held.items() if name not in names}
            newly_wrong = set(_wrong_names(refusal, group, left)) - set(wrong)
            if refusal({group: kept}) is None and not newly_wrong:
                return names
    return tuple(sorted(rest))


def _value_problems(refusal: Refusal, path: tuple[str, ...], value: Any) -> list[SettingProblem]:
    text = refusal(_nested(path, value))
    if text is None:
        return []
    return [SettingProblem(".".join(path), text, _fix(refusal, path, value), path)]


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


def _fix(refusal: Refusal, path: tuple[str, ...], value: Any) -> str:
    """A value the checks take where one is plain (a separator after the tag prefix, a whole
    number for 3.0), else the setting back to its default, or the name to set."""
    setting = ".".join(path)
    candidate: Any = None
    if path == ("tag_prefix",) and isinstance(value, str) and value.strip():
        candidate = value.strip() + ":"
    elif isinstance(value, float) and value.is_integer():
        candidate = int(value)
    if candidate is not None and refusal(_nested(path, candidate)) is None:
        return f"--set {shlex.quote(f'{setting}={candidate}')}"
    if path == ("metafield_namespace",):  # kept once pushed: a default would be refused
        return f"--set {setting}=VALUE"
    return f"--unset {shlex.quote(setting)}  # back to the default"


def _reset_fix(shop: Shop) -> str:
    """The arguments that mend settings that are not an object: all back to the defaults, but
    a namespace the app has pushed under, which they no longer tell, is given again."""
    if shop.definitions_version == 0:
        return "--reset  # every setting back to its default"
    return (
        "--reset --set metafield_namespace=VALUE  # every setting back to its default; VALUE: "
        f"the namespace the app has pushed its metafields under, {DEFAULT_NAMESPACE} unless "
        "it was changed"
    )


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    return {path[0]: {path[1]: value}} if len(path) == 2 else {path[0]: value}


def _problem_lines(domain: str, problems: list[SettingProblem]) -> str:
    lines = [f"{domain}: {len(problems)} problem(s) in the stored settings, {_whose(problems)}:"]
    for problem in problems:
        lines.append(
            f"  {problem.setting}: {problem.text}" if problem.setting else f"  {problem.text}"
        )
        lines.append(f"    fix: clvsync shop settings {domain} {problem.fix}")
    return "\n".join(lines)


def _whose(problems: list[SettingProblem]) -> str:
    ignored = sum(problem.ignored for problem in problems)
    if not ignored:
        return "refused by the jobs"
    if ignored == len(problems):
        return "ignored by the jobs"
    return f"{len(problems) - ignored} refused by the jobs, {ignored} ignored by them"


# A change: where it is stored (as SettingProblem.path), and whether it sets a value there.
Change = tuple[tuple[str, ...], bool]


def _touches(changes: list[Change], problem: SettingProblem) -> bool:
    """The problem is in a value this command set or unset, or in a group it set or unset
    whole, or it is a group's values refused together and the command set one of them: a
    value given beside them would be stored in a group the jobs refuse. (Unsetting one of the
    group's values, as each fix does, leaves such a problem as it was, or mends it.)"""
    path = problem.path
    return any(
        where == path[: len(where)] or (sets and where[: len(path)] == path)
        for where, sets in changes
    )


def _put(values: dict[str, Any], key: str, raw: str | None) -> tuple[str, ...]:
    """Set (or, with no raw value, unset) a top-level setting or a group's named one; where it
    is stored. An unset of a name stored whole at the top (an older release stored
    "scoring.min_customers" or "dry run" as it is) removes that name."""
    group, dot, name = key.partition(".")
    option = "--set" if raw is not None else "--unset"
    if not dot or (raw is None and key in values):
        if raw is None:
            values.pop(key, None)
        else:
            values[key] = _setting_value(key, raw)
        return (key,)
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
    return (group, name)


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


def _change(
    values: dict[str, Any], pairs: list[tuple[str, str]], to_unset: tuple[str, ...]
) -> list[Change]:
    """Each --set, then each --unset, made to `values`; where each was made."""
    changes: list[Change] = [(_put(values, key, raw), True) for key, raw in pairs]
    for key in to_unset:
        # a name stored before names were checked can still be unset: that cleans it up
        if key.partition(".")[0] not in KNOWN_SETTINGS and key not in values:
            close = difflib.get_close_matches(key, sorted(KNOWN_SETTINGS), n=1)
            meant = f"; did you mean {close[0]!r}?" if close else ""
            raise click.BadParameter(
                f"unknown shop setting {key!r} (known: {_known_settings()}){meant}",
                param_hint="--unset",
            )
        changes.append((_put(values, key, None), False))
    return changes


def _refused_text(
    domain: str, refused: list[SettingProblem], stored_so: set[tuple[tuple[str, ...], str]]
) -> str:
    """Each problem that refuses a change; values refused together that were stored before it
    come with their fix, which is to be run first."""
    return "; ".join(
        f"{p.setting}: {p.text}"
        + (
            f" (stored so before this change; run first: clvsync shop settings {domain} "
            f"{p.fix.partition('  #')[0]})"
            if p.together and (p.path, p.text) in stored_so
            else ""
        )
        for p in refused
    )


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
    complementary_products, scoring {...}, schedule {...}, recommendations {...}; one named value
    of a group is group.NAME."""
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
        changes = _change(values, pairs, to_unset)
        shop.settings = json.dumps(values, sort_keys=True)
        problems = shop_settings_problems(shop)
        # Values an older release stored and this one refuses may stay while others are mended
        # one at a time; a value this command gives, or a new problem, is never stored.
        # (a problem is known by where it is and what it says: its fix may change with the
        # values beside it)
        stored_so = {(p.path, p.text) for p in before}
        refused = [p for p in problems if (p.path, p.text) not in stored_so or _touches(changes, p)]
        if refused:
            # raising rolls the change back
            raise click.ClickException(_refused_text(shop.domain, refused, stored_so))
        _check_namespace_kept(shop, None if stored is None else namespace, values)
        click.echo(json.dumps(values, indent=2, sort_keys=True))
        report = _problem_lines(shop.domain, problems)
    if problems:  # told once the change is saved: the values left are the older release's
        raise click.ClickException(report)
