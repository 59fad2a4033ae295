"""Undoing a push: the change that takes a customer's tags and metafields back to where a
recorded run found them.

Only what the run left in place is taken back: a tag it added that the store still holds is
removed, a tag it removed that the store still lacks is added again, a metafield it set that
still holds the value it set goes back to the value before the run (or is deleted if there was
none), and a metafield it deleted that is still absent gets its earlier value back. What a later
run (or a reconcile) changed again is left as it is now: undoing an old run never overwrites
newer work. A tag or metafield a later change touched counts as changed again even when the
store holds what the run left (added, removed, added back): that value is the later run's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from plugin.domain.writeback import CustomerChange, same_value


@dataclass(frozen=True)
class RunChange:
    """One applied change of the run, as the audit recorded it."""

    kind: str  # "tag" | "metafield"
    name: str  # the full tag, or the metafield key
    action: str  # "add" | "remove" | "set" | "delete"
    value: str | None = None  # what a "set" wrote


@dataclass(frozen=True)
class Undo:
    change: CustomerChange | None  # None: nothing the run did is still in place
    superseded: int  # the run's changes that a later change replaced, left alone


def undo_change(
    customer_id: int,
    run: Sequence[RunChange],
    before: Mapping[str, str | None],
    pushed_tags: frozenset[str],
    pushed_values: Mapping[str, str],
    reason: str,
    *,
    later: frozenset[tuple[str, str]] = frozenset(),
) -> Undo:
    """The change that takes back what `run` did to one customer (module docstring).

    `before`: each metafield key's value just before the run (None: it had none);
    `pushed_tags` and `pushed_values`: what the store is known to hold now; `later`: the
    (kind, name) pairs a change after the run's own touched, left alone whatever they hold.
    """
    add: set[str] = set()
    remove: set[str] = set()
    to_set: dict[str, str] = {}
    to_delete: set[str] = set()
    superseded = 0
    for done in run:
        if (done.kind, done.name) in later:
            superseded += 1
        elif done.kind == "tag" and done.action == "add":
            if done.name in pushed_tags:
                remove.add(done.name)
            else:
                superseded += 1
        elif done.kind == "tag" and done.action == "remove":
            if done.name not in pushed_tags:
                add.add(done.name)
            else:
                superseded += 1
        elif done.kind == "metafield" and done.action in ("set", "delete"):
            # compared as what the values mean: the store's form of one read back may differ
            if done.action == "set":
                still = done.value is not None and same_value(
                    pushed_values.get(done.name), done.value
                )
            else:
                still = done.name not in pushed_values
            if not still:
                superseded += 1
                continue
            earlier = before.get(done.name)
            if earlier is not None:
                to_set[done.name] = earlier
            elif done.name in pushed_values:
                to_delete.add(done.name)
    names = sorted(add | remove | set(to_set) | to_delete)
    if not names:
        return Undo(None, superseded)
    change = CustomerChange(
        customer_id,
        add=tuple(sorted(add)),
        remove=tuple(sorted(remove)),
        set_metafields=tuple(sorted(to_set.items())),
        delete_metafields=tuple(sorted(to_delete)),
        reasons=tuple((name, reason) for name in names),
    )
    return Undo(change, superseded)
