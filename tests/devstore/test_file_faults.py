"""Fault injection on the storage endpoints (staged uploads, bulk result files): a seeded share
of 5xx and of answers cut part-way, drawn apart from the GraphQL faults."""

from __future__ import annotations

import contextlib
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from plugin.cli import main
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.faults import FaultInjector, FaultPlan, FilePlan
from plugin.serving import free_port
from tests.devstore.conftest import DevStoreFactory, LiveDevStore
from tests.devstore.test_bulk import STAGE

ROOT = Path(__file__).resolve().parents[2]
STAGE_INPUT = {
    "resource": "BULK_MUTATION_VARIABLES",
    "filename": "v.jsonl",
    "mimeType": "text/jsonl",
    "httpMethod": "POST",
}

RESULT = b"".join(
    json.dumps({"id": f"gid://shopify/Customer/{n}", "note": "x" * 40}).encode() + b"\n"
    for n in range(1, 21)
)
TOKEN = "f00d"


def with_result(store: LiveDevStore) -> str:
    """A result file held by the store, as a finished bulk operation leaves it; its URL."""
    store.state.bulk_results[TOKEN] = RESULT
    return f"{store.base_url}/bulk-results/{TOKEN}.jsonl"


def fetch(store: LiveDevStore, url: str) -> tuple[int, bytes] | str:
    """(status, body) of a GET, or the name of the transport error that ended it."""
    try:
        response = store.client.get(url)
    except httpx.TransportError as exc:
        return type(exc).__name__
    return response.status_code, response.content


def upload(store: LiveDevStore, key: str, content: bytes) -> httpx.Response:
    return store.client.post(
        f"{store.base_url}/staged-uploads",
        data={"key": key},
        files={"file": ("variables.jsonl", content, "text/jsonl")},
    )


def test_file_faults_same_seed_gives_same_sequence() -> None:
    def sequence(seed: int) -> list[FilePlan]:
        injector = FaultInjector(file_error_share=0.3, file_cut_share=0.3, seed=seed)
        return [injector.plan_file() for _ in range(50)]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)
    kinds = {(p.error_status is not None, p.cut_at is not None) for p in sequence(3)}
    assert kinds == {(True, False), (False, True), (False, False)}


def test_file_faults_leave_the_graphql_sequence_of_a_seed_as_it_was() -> None:
    # given an injector with GraphQL and file faults, whose storage requests come between
    # its GraphQL ones
    injector = FaultInjector(
        error_share=0.3, drop_share=0.3, file_error_share=0.5, file_cut_share=0.5, seed=11
    )
    plans = []
    for n in range(60):
        plans.append(injector.plan())
        for _ in range(n % 3):
            injector.plan_file()
    # then the GraphQL plans are the seed's stream, three draws a request, as before file
    # faults existed
    draws = random.Random(11)
    expected = []
    for _ in range(60):
        error, drop, _jitter = (draws.random() for _ in range(3))
        expected.append(
            FaultPlan(error_status=503 if error < 0.3 else None, drop_after_apply=drop < 0.3)
        )
    assert plans == expected


def test_file_cut_length_is_always_short_of_the_whole() -> None:
    assert FilePlan(cut_at=0.0).cut_length(10) == 0
    assert FilePlan(cut_at=0.999).cut_length(10) == 9
    assert FilePlan(cut_at=0.5).cut_length(0) is None
    assert FilePlan().cut_length(10) is None


def test_result_file_error_share_answers_5xx_then_serves_the_file(
    devstore_factory: DevStoreFactory,
) -> None:
    # given a third of storage requests configured to fail
    store = devstore_factory(config=DevStoreConfig(fault_file_error_share=1 / 3, seed=4))
    url = with_result(store)
    # when the result file is fetched 60 times
    answers = [fetch(store, url) for _ in range(60)]
    # then some were 503 (binomial sd ~3.7; the bound is > 2.5 sd) and the rest the whole file
    failures = answers.count((503, b"Storage unavailable; try again"))
    assert 10 <= failures <= 30
    assert answers.count((200, RESULT)) == 60 - failures


def test_result_file_cut_by_abort_closes_the_connection_part_way(
    devstore_factory: DevStoreFactory,
) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_file_cut_share=1.0))
    url = with_result(store)
    with store.client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(RESULT))
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_result_file_cut_by_truncate_serves_a_short_file_as_whole(
    devstore_factory: DevStoreFactory,
) -> None:
    # given every result file served truncated
    config = DevStoreConfig(fault_file_cut_share=1.0, fault_file_cut_mode="truncate", seed=2)
    store = devstore_factory(config=config)
    url = with_result(store)
    # when it is fetched
    bodies = [fetch(store, url) for _ in range(10)]
    # then each is a clean 200 whose body is a strict beginning of the file, cut at varying
    # places (some within a line)
    for answer in bodies:
        assert isinstance(answer, tuple) and answer[0] == 200
        assert len(answer[1]) < len(RESULT) and RESULT.startswith(answer[1])
    assert len({len(answer[1]) for answer in bodies if isinstance(answer, tuple)}) > 5
    assert any(not answer[1].endswith(b"\n") for answer in bodies if isinstance(answer, tuple))


def test_file_faults_are_the_same_for_the_same_seed_over_http(
    devstore_factory: DevStoreFactory,
) -> None:
    def outcomes(seed: int) -> list[tuple[int, int] | str]:
        config = DevStoreConfig(
            fault_file_error_share=0.25,
            fault_file_cut_share=0.25,
            fault_file_cut_mode="truncate",
            seed=seed,
        )
        store = devstore_factory(config=config)
        url = with_result(store)
        answers = [fetch(store, url) for _ in range(30)]
        return [a if isinstance(a, str) else (a[0], len(a[1])) for a in answers]

    first, again, other = outcomes(8), outcomes(8), outcomes(9)
    assert first == again
    assert first != other
    assert {a[0] for a in first if isinstance(a, tuple)} == {200, 503}


def test_file_faults_never_touch_graphql(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(
        config=DevStoreConfig(fault_file_error_share=1.0, fault_file_cut_share=1.0)
    )
    assert store.post("{ shop { name } }").status_code == 200


def test_staged_upload_answered_5xx_stored_nothing(devstore_factory: DevStoreFactory) -> None:
    store = devstore_factory(config=DevStoreConfig(fault_file_error_share=1.0))
    store.state.staged_uploads["tmp/k"] = None
    assert upload(store, "tmp/k", b'{"a":1}\n').status_code == 503
    assert store.state.staged_uploads["tmp/k"] is None


def test_staged_upload_whose_answer_was_cut_was_stored(devstore_factory: DevStoreFactory) -> None:
    # given every storage answer cut part-way (the upload itself arrives whole)
    store = devstore_factory(config=DevStoreConfig(fault_file_cut_share=1.0))
    store.state.staged_uploads["tmp/k"] = None
    # when a file is uploaded, the client sees the connection drop
    with pytest.raises(httpx.RemoteProtocolError):
        upload(store, "tmp/k", b'{"a":1}\n')
    # then the upload was stored anyway: a client that sends it again must be idempotent
    assert store.state.staged_uploads["tmp/k"] == b'{"a":1}\n'


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"fault_file_error_share": 1.5}, "fault_file_error_share must be between 0 and 1"),
        ({"fault_file_cut_share": -0.1}, "fault_file_cut_share must be between 0 and 1"),
        ({"fault_file_cut_mode": "drop"}, "fault_file_cut_mode must be 'abort' or 'truncate'"),
        ({"fault_file_cut_share": "0.5"}, 'fault_file_cut_share must be a number, not "0.5"'),
    ],
)
def test_config_refuses_bad_file_fault_settings(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        DevStoreConfig.from_dict(raw)


def test_config_with_file_faults_round_trips_through_json_dict() -> None:
    config = DevStoreConfig(
        fault_file_error_share=0.2, fault_file_cut_share=0.3, fault_file_cut_mode="truncate"
    )
    assert DevStoreConfig.from_dict(config.to_dict()) == config


def test_devstore_serve_refuses_a_bad_file_fault_setting(tmp_path: Path) -> None:
    config = tmp_path / "devstore.json"
    config.write_text(json.dumps({"fault_file_cut_mode": "drop"}))
    done = CliRunner().invoke(main, ["devstore", "serve", "--config", str(config)])
    assert done.exit_code == 2
    assert "Invalid value for --config: fault_file_cut_mode must be 'abort' or" in done.output


def test_devstore_serve_takes_file_faults_from_its_config(tmp_path: Path) -> None:
    # given the dev store served from the CLI with every storage request failing
    config = tmp_path / "devstore.json"
    config.write_text(json.dumps({"fault_file_error_share": 1.0}))
    port = free_port()
    args = ["devstore", "serve", "--customers", "0", "--port", str(port), "--config", str(config)]
    process = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base}/devstore/health").status_code == 200:
                    break
            assert time.monotonic() < deadline and process.poll() is None, "did not start"
            time.sleep(0.1)
        # when an upload target is issued (GraphQL answers) and the upload is sent
        staged = httpx.post(
            f"{base}/admin/api/2026-10/graphql.json",
            headers={"X-Shopify-Access-Token": DEFAULT_TOKEN},
            json={"query": STAGE, "variables": {"input": [STAGE_INPUT]}},
        ).json()["data"]["stagedUploadsCreate"]["stagedTargets"][0]
        form = {p["name"]: p["value"] for p in staged["parameters"]}
        sent = httpx.post(staged["url"], data=form, files={"file": ("v.jsonl", b"{}\n")})
    finally:
        process.terminate()
        process.wait(timeout=30)
    # then the storage answered 503
    assert sent.status_code == 503
