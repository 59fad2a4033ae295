"""The undo of one customer's changes against what the store is known to hold now, where no
later audit row says what happened (a merchant's hand, a read that found it so): what the run
left in place is taken back, what is no longer as it left it is left alone."""

from __future__ import annotations

from plugin.domain.undo import RunChange, undo_change

REASON = "undo of job run 7"


def test_a_tag_the_run_removed_is_added_back_only_while_the_store_lacks_it() -> None:
    run = [RunChange("tag", "clv:vip", "remove")]
    lacking = undo_change(1, run, {}, frozenset(), {}, REASON)
    assert lacking.change is not None and lacking.change.add == ("clv:vip",)
    held = undo_change(1, run, {}, frozenset({"clv:vip"}), {}, REASON)
    assert (held.change, held.superseded) == (None, 1)


def test_a_value_the_run_deleted_is_put_back_only_while_the_store_has_none() -> None:
    run = [RunChange("metafield", "p_alive", "delete")]
    before = {"p_alive": "0.90"}
    absent = undo_change(1, run, before, frozenset(), {}, REASON)
    assert absent.change is not None and absent.change.set_metafields == (("p_alive", "0.90"),)
    # the store holds a value again: not the run's doing, and not overwritten
    held = undo_change(1, run, before, frozenset(), {"p_alive": "0.50"}, REASON)
    assert (held.change, held.superseded) == (None, 1)


def test_a_delete_of_a_key_that_had_no_value_before_needs_nothing() -> None:
    # the run deleted a value written before the audit began (nothing recorded before it)
    run = [RunChange("metafield", "p_alive", "delete")]
    undo = undo_change(1, run, {"p_alive": None}, frozenset(), {}, REASON)
    assert (undo.change, undo.superseded) == (None, 0)
