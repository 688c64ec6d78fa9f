"""Triton's statistics extension over REST and gRPC, as tritonclient's ``get_inference_statistics`` reads it.

The numbers are the whole server's (every worker's), so they are checked as deltas around requests
this test sends to a model no other test uses here, and must agree whichever worker answers.
"""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

tritonclient_http = pytest.importorskip("tritonclient.http", reason="tritonclient[grpc,http] is a dev dependency")
tritonclient_grpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc,http] is a dev dependency")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "mnist-simple-rnn-cell"
PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@pytest.fixture(scope="module")
def clients(server):
    http = tritonclient_http.InferenceServerClient(server.http_url.removeprefix("http://"), network_timeout=60)
    grpc = tritonclient_grpc.InferenceServerClient(server.grpc_target)
    yield http, grpc
    http.close()
    grpc.close()


def _one(stats: dict) -> dict:
    (entry,) = stats["model_stats"]
    return entry


def _counts(entry: dict) -> dict[str, int]:
    return {phase: int(entry["inference_stats"][phase].get("count", 0)) for phase in PHASES}


def _infer(client, module, rows: int, shape: list[int] | None = None) -> None:
    x = module.InferInput("images", shape or [rows, 28, 28], "FP32")
    x.set_data_from_numpy(np.zeros(shape or (rows, 28, 28), np.float32))
    client.infer(MODEL, [x])


def test_statistics_count_each_request_and_batch_on_both_transports(server, clients):
    http, grpc = clients
    before = _one(http.get_inference_statistics(MODEL))
    started_ms = time.time() * 1000
    for _ in range(4):
        _infer(grpc, tritonclient_grpc, 1)
    _infer(http, tritonclient_http, 3)
    with pytest.raises(InferenceServerException):
        _infer(http, tritonclient_http, 1, shape=[1, 27, 28])  # a bad shape: a failed request of this model
    rest = _one(http.get_inference_statistics(MODEL))
    rpc = _one(grpc.get_inference_statistics(MODEL, as_json=True))
    assert rest["name"] == MODEL and rest["version"] == rpc["version"]
    delta = {k: v - _counts(before)[k] for k, v in _counts(rest).items()}
    assert delta == {"success": 5, "fail": 1, "queue": 5, "compute_input": 5, "compute_infer": 5, "compute_output": 5}, delta
    assert int(rest["inference_count"]) - int(before["inference_count"]) == 7
    assert 1 <= int(rest["execution_count"]) - int(before["execution_count"]) <= 5
    assert int(rest["last_inference"]) >= started_ms - 1000
    for phase in PHASES:
        assert int(rest["inference_stats"][phase]["ns"]) > int(before["inference_stats"][phase].get("ns", 0)), phase
    sizes = {int(b["batch_size"]): b for b in rest["batch_stats"]}
    assert {1, 3} <= set(sizes) and int(sizes[3]["compute_infer"]["count"]) >= 1 and int(sizes[3]["compute_infer"]["ns"]) > 0
    # gRPC's JSON (protobuf's mapping: uint64 as strings) carries the same numbers as REST's
    assert _counts(rpc) == _counts(rest) and str(rpc["inference_count"]) == str(rest["inference_count"])


def test_every_worker_answers_the_same_server_wide_numbers(server):
    answers = {httpx.get(f"{server.http_url}/v2/models/{MODEL}/stats", timeout=30).text for _ in range(12)}
    assert len(answers) == 1, answers
    scrape = httpx.get(f"{server.http_url}/metrics", timeout=30).text
    assert "model_batch_size_count" in scrape and "model_stats_" not in scrape  # its counters stay off /metrics


def test_every_served_version_is_listed_and_a_version_can_be_asked_for(server, clients):
    http, grpc = clients
    everything = http.get_inference_statistics()["model_stats"]
    names = {entry["name"] for entry in everything}
    models = httpx.get(f"{server.http_url}/v1/models", timeout=30).json()["models"]
    assert {m["store_name"] for m in models} <= names
    version = _one(http.get_inference_statistics(MODEL))["version"]
    assert _one(grpc.get_inference_statistics(MODEL, version, as_json=True))["version"] == version
    public = _one(http.get_inference_statistics("simple-rnn-cell"))  # the public name works too
    assert public["name"] == MODEL


@pytest.mark.parametrize("model,version,words", [("no-such-model", "", "unknown model"), (MODEL, "999", "no version")])
def test_unknown_models_and_versions_are_not_found_on_both_transports(server, clients, model, version, words):
    http, grpc = clients
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
    response = httpx.get(f"{server.http_url}{path}", timeout=30)
    assert response.status_code == 404 and words in response.json()["error"].lower(), response.text
    with pytest.raises(InferenceServerException) as raised:
        grpc.get_inference_statistics(model, version)
    assert "NOT_FOUND" in str(raised.value.status()) and words in str(raised.value).lower()


def test_server_metadata_lists_the_extension(clients):
    http, grpc = clients
    assert "statistics" in http.get_server_metadata()["extensions"]
    assert "statistics" in grpc.get_server_metadata(as_json=True)["extensions"]
