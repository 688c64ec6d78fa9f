from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from contract import triton
from loadtests import peers
from loadtests.drivers import wrk
from loadtests.peers import signature, triton_peer

REPO = Path(__file__).resolve().parents[3]

SIGNATURE = {
    "name": "mnist-lstm",
    "public_name": "lstm",
    "task": "classification",
    "inputs": [{"name": "images", "dtype": "float32", "shape": [-1, 28, 28]}],
    "outputs": [{"name": "probabilities", "dtype": "float32", "shape": [-1, 10]}],
}


def make_version(root: Path, version: str) -> Path:
    path = root / "models" / "mnist-lstm" / version
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"onnx")
    (path / "signature.json").write_text(json.dumps(SIGNATURE))
    return path


def test_read_signature_names_and_row_shapes(tmp_path):
    path = make_version(tmp_path, "v1")
    assert signature.read_signature(path) == {
        "name": "mnist-lstm",
        "input": "images",
        "input_row_shape": (28, 28),
        "output": "probabilities",
        "output_row_shape": (10,),
    }


def test_find_model_dir_follows_latest_else_newest(tmp_path, monkeypatch):
    make_version(tmp_path, "old")
    new = make_version(tmp_path, "new")
    assert peers.find_model_dir(tmp_path) == new  # no 'latest' file: the newest folder with a model.onnx
    (tmp_path / "models" / "mnist-lstm" / "latest").write_text("old\n")
    assert peers.find_model_dir(tmp_path).name == "old"
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    assert peers.find_model_dir().name == "old"
    with pytest.raises(peers.PeerError):
        peers.find_model_dir(tmp_path, "mnist-gru")


def test_missing_peers_venv_says_how_to_make_it(tmp_path):
    with pytest.raises(peers.PeerUnavailable, match="make peers-venv"):
        peers.peers_python(tmp_path / ".venv-peers")


def test_peer_request_bodies(tmp_path):
    img = np.zeros((28, 28), dtype=np.uint8)
    args = dict(process=None, grpc_target=None, model_name="mnist-lstm", input_name="images", log_path=tmp_path / "l", launched=0.0)
    triton = peers.Peer("triton", url="http://127.0.0.1:1", infer_path="/v2/models/mnist-lstm/infer", **args)
    textbook = peers.Peer("textbook", url="http://127.0.0.1:2", infer_path="/predict", **args)
    assert triton.request(img) == wrk.RequestSpec("/v2/models/mnist-lstm/infer", wrk.triton_body(img))
    assert textbook.request(img) == wrk.RequestSpec("/predict", wrk.textbook_body(img))


def test_triton_defaults_are_the_benchmark_settings():
    """The benchmark's Triton peer: our engine's 64 rows, and up to 2 ms of queue delay as in every side-by-side so far."""
    args = triton_peer.build_parser().parse_args(["--model-dir", "m", "--http-port", "1", "--grpc-port", "2"])
    assert (args.max_batch, args.max_queue_delay_us, args.instances, args.metrics_port, args.host) == (64, 2000, 1, 0, "127.0.0.1")
    assert (signature.DEFAULT_MAX_BATCH, signature.DEFAULT_QUEUE_DELAY_US) == (triton.MAX_BATCH_SIZE, 2000)


def test_libpython_goes_first_once():
    assert triton_peer.with_libpython_first(None, "/py/lib") == "/py/lib"
    assert triton_peer.with_libpython_first("/a:/py/lib:/b", "/py/lib") == "/py/lib:/a:/b"
    assert triton_peer.with_libpython_first("/a", None) == "/a"


def test_the_triton_side_imports_only_the_standard_library():
    """``python -m loadtests.peers.triton_peer`` runs in .venv-peers: the package must import without
    site-packages (no psutil, no serving/; contract's artifacts and triton modules are standard library
    only) until main() imports numpy/onnxruntime/pytriton."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import loadtests.peers, loadtests.peers.triton_peer; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'psutil', 'serving', 'bentoml')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-S", "-I", "-c", code, str(REPO)], check=True, timeout=60)


def test_textbook_service_is_the_documented_shape(monkeypatch):
    from loadtests.peers import textbook_bento

    api = textbook_bento.TextbookService.apis["predict"]
    assert api.batchable and api.max_batch_size == triton.MAX_BATCH_SIZE == 64 and api.max_latency_ms == textbook_bento.MAX_LATENCY_MS


def test_side_by_side_table_has_the_grpc_and_v2_lines():
    from loadtests.peers import compare

    run = {
        "connections": 32,
        "concurrency": 32,
        "rps": 4000.0,
        "p50_ms": 7.0,
        "p99_ms": 13.0,
        "errors": 0,
        "non2xx": 0,
        "server_cpu_cores": 1.9,
        "client_cpu_cores": 0.1,
    }
    row = {
        "server": "ours",
        "label": "ours",
        "runs": [run],
        "rss_mb": 520.0,
        "processes": 3,
        "ready_s": 3.0,
        "grpc": run,
        "v2": {"http_json": run, "http_binary": run, "grpc": {"skipped": "h2load is not installed"}},
    }
    table = compare.render_markdown([row])
    assert "TF-Serving gRPC `Predict`" in table
    assert compare.V2_LABELS["http_json"] in table and compare.V2_LABELS["http_binary"] in table
    assert compare.V2_LABELS["grpc"] not in table  # a skipped run is left out, not shown as zeros
    assert table.count("| 4,000 |") == 4
