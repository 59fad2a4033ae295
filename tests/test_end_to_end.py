"""A generated store's whole history, sent by the dev store's webhook sender to the real app
over HTTP (with duplicates and reordering), ends in the ledger the generator says it should."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from plugin.app import create_app
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.devstore.sender import DeliveryFaults, RetrySchedule, WebhookSender
from plugin.serving import serve_in_thread
from plugin.store.models import Customer
from tests.helpers import SECRET, add_shop, make_settings
from webhooks.processor import Processor


@pytest.mark.anyio
async def test_generated_history_with_duplicates_and_reordering_gives_the_planted_ledger(
    engine: Engine,
) -> None:
    # given a generated store (refunds, edits, cancellations, guest and test orders included)
    store = generate_store(GeneratorConfig(customers=80), seed=7)
    add_shop(engine, store.shop_domain)
    app = create_app(make_settings(), engine=engine, run_processor=False, run_jobs=False)
    faults = DeliveryFaults(duplicate_share=0.1, reorder_window=20)
    # when its history is delivered, shuffled and partly twice, and processed
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient() as client:
            sender = WebhookSender(
                client,
                app_url=url,
                secret=SECRET,
                shop_domain=store.shop_domain,
                schedule=RetrySchedule(),
                faults=faults,
                concurrency=4,
                seed=3,
                keep_records=False,
            )
            summary = await sender.send(store.events)
    assert summary.failed == 0 and summary.acknowledged == summary.sent
    Processor(engine).drain()
    # then every customer's orders and net spend are the generator's counted purchases
    expected: dict[int, list[Decimal]] = defaultdict(list)
    for purchase in store.transactions:
        expected[purchase.customer_id].append(purchase.amount)
    with Session(engine) as session:
        held = {c.customer_id: (c.orders, c.net_spend) for c in session.exec(select(Customer))}
    assert {cid: (len(v), sum(v, Decimal(0))) for cid, v in expected.items()} == {
        cid: figures for cid, figures in held.items() if figures[0] > 0
    }
