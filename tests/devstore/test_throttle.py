"""The leaky bucket over HTTP: drains, THROTTLED in Shopify's shape (200 or 429), restores."""

from __future__ import annotations

import pytest

from plugin.devstore.config import DevStoreConfig
from plugin.devstore.state import DevStoreState
from plugin.devstore.throttle import LeakyBucketThrottle
from tests.devstore.conftest import DevStoreFactory, FakeClock, make_state

TAG = (
    'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["x"]) '
    "{ node { id } userErrors { message } } }"
)


@pytest.mark.parametrize("status_code", [200, 429])
def test_bucket_drained_by_mutations_answers_throttled(
    devstore_factory: DevStoreFactory,
    status_code: int,
) -> None:
    # Given a 50-point bucket that restores 10 points a second, and a frozen clock
    config = DevStoreConfig(bucket_size=50, restore_rate=10, throttle_status_code=status_code)
    store = devstore_factory(config=config)
    # When six 10-point mutations arrive at the same instant
    responses = [store.post(TAG) for _ in range(6)]
    # Then five pass and the sixth is THROTTLED with the configured status and Shopify's body
    assert [r.status_code for r in responses[:5]] == [200] * 5
    throttled = responses[5]
    assert throttled.status_code == status_code
    body = throttled.json()
    assert body["errors"][0]["message"] == "Throttled"
    assert body["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert "data" not in body
    assert body["extensions"]["cost"] == {
        "requestedQueryCost": 10,
        "actualQueryCost": None,
        "throttleStatus": {"maximumAvailable": 50, "currentlyAvailable": 0, "restoreRate": 10},
    }
    # in Shopify's types: the size and the rate as decimals (50.0), the points left whole
    status = body["extensions"]["cost"]["throttleStatus"]
    assert [type(status[name]) for name in status] == [float, int, float], status
    # And a 429 says when 10 points will be back (1 s at 10 points a second)
    expected_retry_after = "1.0" if status_code == 429 else None
    assert throttled.headers.get("Retry-After") == expected_retry_after


def test_bucket_restores_at_the_configured_rate(devstore_factory: DevStoreFactory) -> None:
    # Given an emptied 20-point bucket restoring 10 points a second
    store = devstore_factory(config=DevStoreConfig(bucket_size=20, restore_rate=10))
    assert [store.post(TAG).status_code for _ in range(2)] == [200, 200]
    assert store.post(TAG).json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    # When 0.9 s pass, 9 points are back: still not enough
    store.clock.advance(0.9)
    assert store.post(TAG).json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    # When another 0.1 s pass, 10 points are back: the mutation runs
    store.clock.advance(0.1)
    body = store.post(TAG).json()
    assert "errors" not in body
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] == 0


def test_buckets_are_per_shop_whatever_the_token(devstore_factory: DevStoreFactory) -> None:
    # Given two tokens for one shop, one for another, and a bucket that holds one mutation
    other = DevStoreState(domain="other.myshopify.com")
    other.add_customer({"id": 1})
    tokens = {
        "shpat_a": "devstore.myshopify.com",
        "shpat_refreshed": "devstore.myshopify.com",
        "shpat_other": "other.myshopify.com",
    }
    config = DevStoreConfig(bucket_size=10, access_tokens=tokens)
    store = devstore_factory([make_state(), other], config)
    store.token = "shpat_a"
    assert store.post(TAG).status_code == 200
    # When a refreshed token for the same shop calls
    store.token = "shpat_refreshed"
    # Then it draws from the same, empty bucket (Shopify's bucket is per app and shop)
    assert store.post(TAG).json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    # And the other shop's bucket is full
    store.token = "shpat_other"
    assert "errors" not in store.post(TAG).json()


def test_throttle_refund_never_overfills() -> None:
    clock = FakeClock()
    throttle = LeakyBucketThrottle(100, 10, clock)
    assert throttle.try_acquire("t", 30)
    throttle.settle("t", 500, 0)
    assert throttle.status("t").currently_available == 100


def test_throttle_refuses_more_than_available_and_takes_nothing() -> None:
    clock = FakeClock()
    throttle = LeakyBucketThrottle(100, 10, clock)
    assert throttle.try_acquire("t", 95)
    assert not throttle.try_acquire("t", 10)
    assert throttle.status("t").currently_available == 5
    clock.advance(0.5)
    assert throttle.try_acquire("t", 10)


def test_throttle_idle_bucket_fills_to_its_size_and_no_further() -> None:
    clock = FakeClock()
    throttle = LeakyBucketThrottle(100, 10, clock)
    assert throttle.try_acquire("t", 60)
    clock.advance(3600)
    assert throttle.status("t").currently_available == 100
    assert not throttle.try_acquire("t", 101)


def test_throttle_call_that_cost_more_than_it_asked_empties_the_bucket_not_below() -> None:
    # given a call charged 10 of 20 points up front that, run, cost 50 (Shopify charges the
    # actual cost)
    clock = FakeClock()
    throttle = LeakyBucketThrottle(20, 10, clock)
    assert throttle.try_acquire("t", 10)
    throttle.settle("t", 10, 50)
    # then the bucket is empty, not owed 30 points: a second later it holds 10
    assert throttle.status("t").currently_available == 0
    clock.advance(1.0)
    assert throttle.status("t").currently_available == 10
    assert throttle.seconds_until("t", 20) == 1.0
