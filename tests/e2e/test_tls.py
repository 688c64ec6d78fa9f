"""TLS on both ports (SERVING_TLS_CERT / SERVING_TLS_KEY) and mutual TLS (SERVING_TLS_CLIENT_CA), with
certificates this test makes with openssl: a CA, a server certificate for 127.0.0.1, a client certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contract.protos.inference import grpc_service_pb2 as pb
from contract.protos.inference import grpc_service_pb2_grpc
from loadtests.server import launch, stop

pytestmark = pytest.mark.slow


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make the test's certificates (apt-get install openssl)")
    d = tmp_path_factory.mktemp("certs")
    (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=test-ca", cwd=d
    )
    for name in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        extra = ["-extfile", "san.cnf"] if name == "server" else []
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.pem",
            "-days",
            "2",
            *extra,
            cwd=d,
        )
    return d


def _serve(trained_store, root: Path, env: dict[str, str]):
    home = root / "bentoml"
    shutil.copytree(Path(trained_store.home) / "models", home / "models")
    service = launch(root / "server.log", str(home), extra_env={"SERVING_WORKERS": "1", "SERVING_STATE_DIR": str(root / "state"), **env})
    service.http_url = service.http_url.replace("http://", "https://")
    return service


def _wait(service, verify: ssl.SSLContext, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(service.log_tail())
        try:
            if httpx.get(f"{service.http_url}/readyz", verify=verify, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(service.log_tail())


def _context(certs: Path, client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    if client:
        context.load_cert_chain(str(certs / "client.pem"), str(certs / "client.key"))
    return context


def _grpc_credentials(certs: Path, client: bool) -> grpc.ChannelCredentials:
    root = (certs / "ca.pem").read_bytes()
    if not client:
        return grpc.ssl_channel_credentials(root_certificates=root)
    return grpc.ssl_channel_credentials(root, (certs / "client.key").read_bytes(), (certs / "client.pem").read_bytes())


def _infer(channel: grpc.Channel) -> np.ndarray:
    request = pb.ModelInferRequest(model_name="mnist-lstm", raw_input_contents=[np.zeros((1, 28, 28), np.float32).tobytes()])
    request.inputs.add(name="images", datatype="FP32", shape=[1, 28, 28])
    response = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    return np.frombuffer(response.raw_output_contents[0], np.float32)


def test_tls_on_both_ports(trained_store, certs, tmp_path):
    service = _serve(trained_store, tmp_path, {"SERVING_TLS_CERT": str(certs / "server.pem"), "SERVING_TLS_KEY": str(certs / "server.key")})
    try:
        _wait(service, _context(certs, client=False))
        answer = httpx.post(
            f"{service.http_url}/v1/classify", json={"model": "lstm", "images": [[[0] * 28] * 28]}, verify=_context(certs, False)
        )
        assert answer.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
            httpx.get(service.http_url.replace("https://", "http://") + "/readyz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
            httpx.get(f"{service.http_url}/readyz", timeout=5)
        with grpc.secure_channel(service.grpc_target, _grpc_credentials(certs, client=False)) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            assert _infer(channel).shape == (10,)
        with grpc.insecure_channel(service.grpc_target) as plain, pytest.raises(grpc.RpcError) as raised:
            _infer(plain)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop(service)


def test_mutual_tls_needs_a_client_certificate(trained_store, certs, tmp_path):
    env = {
        "SERVING_TLS_CERT": str(certs / "server.pem"),
        "SERVING_TLS_KEY": str(certs / "server.key"),
        "SERVING_TLS_CLIENT_CA": str(certs / "ca.pem"),
    }
    service = _serve(trained_store, tmp_path, env)
    try:
        _wait(service, _context(certs, client=True))
        assert httpx.get(f"{service.http_url}/v2/health/ready", verify=_context(certs, True)).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{service.http_url}/v2/health/ready", verify=_context(certs, False), timeout=5)
        with grpc.secure_channel(service.grpc_target, _grpc_credentials(certs, client=True)) as channel:
            assert _infer(channel).shape == (10,)
        with grpc.secure_channel(service.grpc_target, _grpc_credentials(certs, client=False)) as channel:
            with pytest.raises(grpc.RpcError) as raised:
                _infer(channel)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        stop(service)
