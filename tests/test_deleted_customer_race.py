"""A customer deleted in the store (customers/delete, or a read that misses them) has no pushed
state: the push would otherwise plan to take every tag and value off a customer the store no
longer holds. The writers of pushed state (a push recording its answers, its write-ahead
marks, a reconcile recording what it read) leave a deleted customer out, and on PostgreSQL a
deletion and such a writer at the same time wait for each other, whichever comes first."""

from __future__ import annotations

import threading

from sqlalchemy import Engine
from sqlmodel import Session

from plugin.store import ledger
from plugin.store.models import CustomerSync
from plugin.store.sync import mark_uncertain, record_outcomes, record_read_back
from tests.helpers import T0
from tests.test_redact_integrity import outcome, seed, synced, wait_for_a_lock_wait


def delete_501(engine: Engine, shop_id: int) -> None:
    with Session(engine) as session, session.begin():
        ledger.mark_customer_deleted(session, shop_id, 501, T0)


def test_the_writers_of_pushed_state_leave_a_deleted_customer_out(engine: Engine) -> None:
    # given 501 marked deleted while a push and a reconcile were under way
    shop_id = seed(engine)
    delete_501(engine, shop_id)
    # when they record what they did and read for 501 and 502
    record_outcomes(
        engine, shop_id, [outcome(501), outcome(502)], via="call", job_run_id=None, now=T0
    )
    mark_uncertain(engine, shop_id, {501, 502})
    read = {c: (frozenset({"clv:new"}), {}) for c in (501, 502)}
    assert record_read_back(engine, shop_id, read, T0) == 0
    # then nothing is held, nor audited, for 501
    assert synced(engine) == ([502], [502])


def test_on_postgresql_a_push_recording_during_a_deletion_waits_and_writes_nothing_for_it(
    postgres_engine: Engine,
) -> None:
    # given 501's deletion under way (not committed yet)
    engine = postgres_engine
    shop_id = seed(engine)
    errors: list[BaseException] = []

    def record() -> None:
        try:
            record_outcomes(
                engine, shop_id, [outcome(501), outcome(502)], via="call", job_run_id=None,
                now=T0,
            )  # fmt: skip
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Session(engine) as session, session.begin():
        ledger.mark_customer_deleted(session, shop_id, 501, T0)
        # when a push that sent 501 its changes before records their answers meanwhile
        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        waited = wait_for_a_lock_wait(engine)
    thread.join(30)
    # then it waited for the deletion, and recorded 502 only
    assert errors == [] and not thread.is_alive() and waited
    assert synced(engine) == ([502], [502])


def test_on_postgresql_a_deletion_during_a_push_recording_waits_and_drops_what_it_wrote(
    postgres_engine: Engine,
) -> None:
    # given a writer of pushed state (as `record_outcomes` writes) under way for 501 and 502:
    # their rows held, 501's new state written, not committed yet
    engine = postgres_engine
    shop_id = seed(engine)
    errors: list[BaseException] = []

    def delete() -> None:
        try:
            delete_501(engine, shop_id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with Session(engine) as session, session.begin():
        held = ledger.hold_customers(session, shop_id, [501, 502], alive=True)
        session.add(CustomerSync(shop_id=shop_id, customer_id=501, tags='["clv:new"]'))
        session.flush()
        # when 501's customers/delete is applied meanwhile
        thread = threading.Thread(target=delete, daemon=True)
        thread.start()
        thread.join(1.0)
        waited = thread.is_alive()  # it must not get through while the write is under way
    thread.join(30)
    # then the deletion waited for the write's commit, and dropped what it wrote
    assert held == {501, 502}
    assert errors == [] and not thread.is_alive() and waited
    assert synced(engine)[0] == []
