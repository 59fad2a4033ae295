"""Fault injection: a seeded share of 5xx, added latency, responses dropped after applying."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from plugin.devstore.config import DevStoreConfig
from plugin.devstore.faults import FaultInjector
from tests.devstore.conftest import DevStoreFactory

TAG = (
    'mutation { tagsAdd(id: "gid://shopify/Customer/1", tags: ["clv:lost"]) '
    "{ node { id } userErrors { message } } }"
)


def test_faults_error_share_is_close_to_configured_for_a_seed(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given a quarter of requests configured to fail with 503
    store = devstore_factory(config=DevStoreConfig(fault_error_share=0.25, seed=7))
    # When 200 queries are sent
    statuses = [store.post("{ shop { name } }").status_code for _ in range(200)]
    # Then about 50 fail (binomial sd ~6; the bound is > 3 sd) and the rest succeed
    failures = statuses.count(503)
    assert 30 <= failures <= 70
    assert statuses.count(200) == 200 - failures


def test_faults_error_response_has_no_effect(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_error_share=1.0))
    response = store.post(TAG)
    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert store.state.customers[1].tags == []


def test_faults_same_seed_gives_same_sequence() -> None:
    def sequence(seed: int) -> list[object]:
        injector = FaultInjector(error_share=0.3, drop_share=0.3, seed=seed)
        return [injector.plan() for _ in range(50)]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


def test_faults_dropped_response_with_502_still_applied_the_mutation(
    devstore_factory: DevStoreFactory,
) -> None:
    # Given every mutation response dropped as a 502 after applying
    store = devstore_factory(config=DevStoreConfig(fault_drop_share=1.0, fault_drop_mode="status"))
    # When the client adds a tag and sees a failure
    response = store.post(TAG)
    assert response.status_code == 502
    # Then the tag is there anyway, and a retry (as an idempotent client does) changes nothing
    assert store.state.customers[1].tags == ["clv:lost"]
    store.post(TAG)
    assert store.state.customers[1].tags == ["clv:lost"]


def test_faults_aborted_response_still_applied_the_mutation(
    devstore_factory: DevStoreFactory,
) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_drop_share=1.0, fault_drop_mode="abort"))
    with pytest.raises(httpx.RemoteProtocolError):
        store.post(TAG)
    assert store.state.customers[1].tags == ["clv:lost"]


def test_faults_drop_never_hits_queries(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_drop_share=1.0))
    assert store.post("{ shop { name } }").status_code == 200


def test_faults_latency_delays_the_response(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_latency_seconds=0.25))
    started = time.monotonic()
    assert store.post("{ shop { name } }").status_code == 200
    assert time.monotonic() - started >= 0.25


def test_config_rejects_unknown_settings_and_bad_status() -> None:
    with pytest.raises(ValueError, match="unknown"):
        DevStoreConfig.from_dict({"bucket": 1})
    with pytest.raises(ValueError, match="200 or 429"):
        DevStoreConfig(throttle_status_code=503)


@pytest.mark.parametrize("name", ["bucket_size", "restore_rate"])
@pytest.mark.parametrize("value", [0, -1])
def test_config_refuses_a_bucket_that_never_holds_or_refills(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        DevStoreConfig.from_dict({name: value})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"bucket_size": "x"}, 'bucket_size must be a number, not "x"'),
        ({"seed": 1.5}, "seed must be a whole number, not 1.5"),
        ({"fault_error_share": True}, "fault_error_share must be a number, not true"),
        ({"api_versions": "2026-10"}, 'api_versions must be a list of strings, not "2026-10"'),
        ({"shopify_namespaces_writable": 1}, "shopify_namespaces_writable must be true or false"),
        ({"access_tokens": {"shpat_x": 1}}, "access_tokens must be an object of token: shop"),
    ],
)
def test_config_names_a_setting_of_the_wrong_type(raw: dict[str, Any], message: str) -> None:
    # a number given as text was taken, and failed every request of the store with a TypeError
    with pytest.raises(ValueError, match=re.escape(message)):
        DevStoreConfig.from_dict(raw)


def test_config_round_trips_through_json_dict() -> None:
    config = DevStoreConfig(bucket_size=4000, restore_rate=200, api_versions=("2026-10",))
    assert DevStoreConfig.from_dict(config.to_dict()) == config
