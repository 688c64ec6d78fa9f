"""Peer servers for the benchmark: the same ONNX file served by Triton (PyTriton) and by textbook BentoML.

    from loadtests import peers
    from loadtests.drivers import wrk

    model_dir = peers.find_model_dir(home, "mnist-lstm")          # or the registry's runtime path
    peer = peers.start_triton(model_dir, out / "triton.log")      # returns when the model is ready
    try:
        spec = peer.request(image)                                 # path + body + content type for one image
        result = wrk.run_wrk(peer.url, spec.path, spec.body, spec.content_type, connections=32, duration_s=10)
        rss = peer.rss_mb()                                        # every process of the peer, MB
    finally:
        peer.stop()

Triton runs with ``.venv-peers/bin/python`` (``make peers-venv``; nvidia-pytriton's pins clash with the
main venv); :class:`PeerUnavailable` says so when that venv is missing. The textbook BentoML service
runs with the main venv's ``bentoml serve``. Both listen on 127.0.0.1 on free ports.

This package's top level imports only the standard library: ``python -m loadtests.peers.triton_peer``
imports it inside ``.venv-peers``, which has neither psutil nor the main venv's packages.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..server import REPO, free_port
from .signature import DEFAULT_QUEUE_DELAY_US, read_signature

PEERS_VENV = REPO / ".venv-peers"
TEXTBOOK_SERVICE = "loadtests.peers.textbook_bento:TextbookService"
MB = 1024 * 1024


class PeerError(RuntimeError):
    """A peer did not start or did not become ready."""


class PeerUnavailable(PeerError):
    """A peer cannot run on this machine as set up (e.g. no ``.venv-peers``)."""


def find_model_dir(home: str | os.PathLike[str] | None = None, name: str = "mnist-lstm") -> Path:
    """``<store>/models/<name>/<latest version>/`` (with ``model.onnx``) of a BentoML store.

    ``home`` defaults to ``$BENTOML_HOME``, else ``~/bentoml``.
    """
    root = Path(home or os.environ.get("BENTOML_HOME") or Path.home() / "bentoml").expanduser() / "models" / name
    latest = root / "latest"
    if latest.is_file():
        path = root / latest.read_text().strip()
    else:
        versions = sorted((p for p in root.glob("*") if (p / "model.onnx").is_file()), key=lambda p: p.stat().st_mtime)
        if not versions:
            raise PeerError(f"no stored model {name!r} under {root}")
        path = versions[-1]
    if not (path / "model.onnx").is_file() or not (path / "signature.json").is_file():
        raise PeerError(f"{path} has no model.onnx + signature.json")
    return path


def peers_python(venv: Path = PEERS_VENV) -> Path:
    """The peers venv's interpreter, or :class:`PeerUnavailable` saying how to make it."""
    python = venv / "bin" / "python"
    if not python.exists():
        raise PeerUnavailable(f"{venv} is missing: run `make peers-venv` (Triton via nvidia-pytriton lives in its own venv)")
    return python


@dataclass
class Peer:
    """A running peer server: its root process and, through psutil, every process under it."""

    name: str  # "triton" or "textbook"
    process: subprocess.Popen
    url: str  # HTTP base URL
    grpc_target: str | None  # host:port of its gRPC endpoint (Triton: KServe v2 GRPCInferenceService), if any
    infer_path: str  # HTTP path of one inference
    model_name: str  # the name the peer serves the model under
    input_name: str
    log_path: Path
    launched: float  # time.monotonic() at launch
    ready_s: float | None = None
    _known: dict[int, Any] = field(default_factory=dict, repr=False)  # pid -> psutil.Process seen under the root

    # ------------------------------------------------------------ processes

    def processes(self) -> list[Any]:
        """``psutil.Process`` of the root and every live descendant (Triton: tritonserver, its Python-backend
        stub and that stub's helpers; BentoML: the worker)."""
        import psutil

        try:
            root = psutil.Process(self.process.pid)
            for p in [root, *root.children(recursive=True)]:
                self._known.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        alive = []
        for pid, p in list(self._known.items()):
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(p)
                    continue
            except psutil.Error:
                pass
            del self._known[pid]
        return alive

    def rss_by_process(self) -> list[dict[str, Any]]:
        """``{pid, name, rss_mb}`` of each of the peer's processes."""
        import psutil

        rows = []
        for p in self.processes():
            try:
                rows.append({"pid": p.pid, "name": p.name(), "rss_mb": p.memory_info().rss / MB})
            except psutil.Error:
                pass
        return rows

    def rss_mb(self) -> float:
        """Resident memory of all the peer's processes together, MB (shared pages counted in each)."""
        return sum(r["rss_mb"] for r in self.rss_by_process())

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) so far of the peer's live processes."""
        import psutil

        total = 0.0
        for p in self.processes():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ------------------------------------------------------------ requests

    def request(self, image: Any) -> Any:
        """The :class:`loadtests.drivers.wrk.RequestSpec` of one 28x28 uint8 image for this peer."""
        from ..drivers import wrk

        if self.name == "triton":
            return wrk.RequestSpec(self.infer_path, wrk.triton_body(image, self.input_name))
        return wrk.RequestSpec(self.infer_path, wrk.textbook_body(image, self.input_name))

    # ------------------------------------------------------------ lifecycle

    def wait_ready(self, paths: list[str], timeout: float) -> float:
        """Seconds from launch until every ``GET url+path`` answers 200; :class:`PeerError` if the peer exits
        or the time runs out."""
        deadline = time.monotonic() + timeout
        pending = list(paths)
        while pending:
            if self.process.poll() is not None:
                raise PeerError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PeerError(f"{self.name} was not ready after {timeout:.0f}s ({pending[0]}):\n{self.log_tail()}")
            if http_status(self.url + pending[0]) == 200:
                pending.pop(0)
                continue
            time.sleep(0.1)
        self.ready_s = time.monotonic() - self.launched
        self.processes()  # remember the children now, so stop() reaches them even if the root dies first
        return self.ready_s

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT the root (both peers shut down cleanly on it), then end whatever of its processes is left:
        SIGTERM, and SIGKILL after 5 s. Safe to call twice."""
        import psutil

        procs = self.processes()
        if self.process.poll() is None:
            try:
                self.process.send_signal(signal.SIGINT)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        left = [p for p in procs if p.pid != self.process.pid and _alive(p)]
        for p in left:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, still = psutil.wait_procs(left, timeout=5)
        for p in still:
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        psutil.wait_procs(still, timeout=5)
        self._known.clear()
        return self.process.returncode

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(p: Any) -> bool:
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status of ``GET url``, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return None


def _launch(name: str, cmd: list[str], env: dict[str, str], log_path: Path, cpus: set[int] | None) -> tuple[subprocess.Popen, float]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        launched = time.monotonic()
        process = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
    return process, launched


def _started(peer: Peer, ready_paths: list[str], timeout: float) -> Peer:
    try:
        peer.wait_ready(ready_paths, timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


def start_triton(
    model_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    *,
    cpus: set[int] | None = None,
    timeout: float = 180.0,
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US,
    instances: int = 1,
    ort_threads: int = 0,
    python: str | os.PathLike[str] | None = None,
) -> Peer:
    """Triton (PyTriton, ONNX Runtime in the infer function, dynamic batching) on free loopback ports,
    returned once ``/v2/health/ready`` and the model's ``/ready`` answer 200; stopped on failure.
    ``cpus`` pins it and its children."""
    model_dir = Path(model_dir).resolve()
    sig = read_signature(model_dir)
    py = Path(python) if python else peers_python()
    http_port, grpc_port = free_port(), free_port()
    cmd = [
        str(py),
        "-m",
        "loadtests.peers.triton_peer",
        "--model-dir",
        str(model_dir),
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--max-queue-delay-us",
        str(max_queue_delay_us),
        "--instances",
        str(instances),
        "--ort-threads",
        str(ort_threads),
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    process, launched = _launch("triton", cmd, env, Path(log_path), cpus)
    peer = Peer(
        "triton",
        process,
        f"http://127.0.0.1:{http_port}",
        f"127.0.0.1:{grpc_port}",
        f"/v2/models/{sig['name']}/infer",
        sig["name"],
        sig["input"],
        Path(log_path),
        launched,
    )
    return _started(peer, ["/v2/health/ready", f"/v2/models/{sig['name']}/ready"], timeout)


def start_textbook(
    model_dir: str | os.PathLike[str],
    log_path: str | os.PathLike[str],
    *,
    cpus: set[int] | None = None,
    timeout: float = 180.0,
    max_latency_ms: int | None = None,
) -> Peer:
    """The textbook BentoML service (``bentoml serve``, BentoML's default of one worker) on a free loopback
    port, returned once ``/readyz`` answers 200; stopped on failure."""
    model_dir = Path(model_dir).resolve()
    sig = read_signature(model_dir)
    port = free_port()
    script = Path(sys.executable).with_name("bentoml")
    launcher = [str(script)] if script.exists() else [sys.executable, "-m", "bentoml"]
    cmd = [*launcher, "serve", TEXTBOOK_SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "TEXTBOOK_MODEL_PATH": str(model_dir / "model.onnx"), "BENTOML_DO_NOT_TRACK": "True"}
    if max_latency_ms is not None:
        env["TEXTBOOK_MAX_LATENCY_MS"] = str(max_latency_ms)
    process, launched = _launch("textbook", cmd, env, Path(log_path), cpus)
    peer = Peer("textbook", process, f"http://127.0.0.1:{port}", None, "/predict", sig["name"], sig["input"], Path(log_path), launched)
    return _started(peer, ["/readyz"], timeout)
