"""BASELINE, not the product: what a seed user would write to serve one model.

A ``http.server.ThreadingHTTPServer`` that loads the store's ``saved_model/`` into Keras
(``keras.layers.TFSMLayer``) and calls ``model.predict`` once per request, plus the seed
notebook's manifold loop (one ``decoder.predict`` per grid point). ``python -m loadtests.bench``
measures it next to the real service; nothing else uses it.

    python -m loadtests.baseline_server serve --model-dir STORE/models/mnist-lstm/<version> --port 8000
    python -m loadtests.baseline_server seed-manifold --model-dir STORE/models/fashion-vae2-decoder/<version> --calls 50
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from contract.artifacts import read_signature


def load_keras(model_dir: Path) -> tuple[Any, dict[str, Any]]:
    """A Keras model around ``model_dir/saved_model`` (signature ``serving_default``), and signature.json."""
    import keras

    signature = read_signature(model_dir)
    spec = signature["inputs"][0]
    layer = keras.layers.TFSMLayer(str(model_dir / "saved_model"), call_endpoint=signature.get("signature_name", "serving_default"))
    inputs = keras.Input(shape=tuple(spec["shape"][1:]), name=spec["name"], dtype=spec["dtype"])
    model = keras.Model(inputs, layer(inputs))
    return model, signature


def first_output(result: Any) -> Any:
    """``predict``'s first output, whether Keras returned a dict, a list or an array."""
    if isinstance(result, dict):
        return next(iter(result.values()))
    if isinstance(result, (list, tuple)):
        return result[0]
    return result


def make_handler(model: Any, signature: dict[str, Any]) -> type[BaseHTTPRequestHandler]:
    import numpy as np

    output_name = signature["outputs"][0]["name"]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like any client library expects

        def log_message(self, format: str, *args: Any) -> None:  # one line per request would cost more than it tells
            pass

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(200 if self.path in ("/readyz", "/livez") else 404, b"{}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/v1/classify":
                self._send(404, b'{"error": "not found"}')
                return
            try:
                images = np.asarray(json.loads(body)["images"], dtype=np.float32) / 255.0
                probs = first_output(model.predict(images, verbose=0))
            except Exception as e:  # the baseline answers 500 with the message, as a quick server would
                self._send(500, json.dumps({"error": str(e)}).encode())
                return
            answer = {"model": output_name, "predictions": [{"label": int(p.argmax()), "probabilities": p.tolist()} for p in probs]}
            self._send(200, json.dumps(answer).encode())

    return Handler


def serve(model_dir: Path, host: str, port: int) -> int:
    model, signature = load_keras(model_dir)
    server = ThreadingHTTPServer((host, port), make_handler(model, signature))
    server.daemon_threads = True
    print(f"baseline: Keras model.predict per request on http://{host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def seed_manifold(model_dir: Path, calls: int, n: int = 30) -> dict[str, Any]:
    """Time ``calls`` single-point ``decoder.predict`` calls of the seed's n x n loop (measured, not the whole loop)."""
    import numpy as np

    model, signature = load_keras(model_dir)
    latent_dim = int(signature["latent_dim"])
    grid = np.linspace(-2.0, 2.0, n)
    points = [(xi, yi) for yi in grid[::-1] for xi in grid][:calls]
    model.predict(np.zeros((1, latent_dim), np.float32), verbose=0)  # the seed's first call pays for tracing; not counted
    started = time.perf_counter()
    for xi, yi in points:
        z = np.zeros((1, latent_dim), np.float32)
        z[0, 0], z[0, 1] = xi, yi
        first_output(model.predict(z, verbose=0))
    seconds = time.perf_counter() - started
    per_call_ms = seconds * 1000.0 / len(points)
    return {
        "calls_measured": len(points),
        "seconds_measured": seconds,
        "ms_per_call": per_call_ms,
        "grid_calls": n * n,
        "extrapolated_ms": per_call_ms * n * n,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.baseline_server", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("serve", help="serve POST /v1/classify with model.predict per request")
    s.add_argument("--model-dir", type=Path, required=True, help="a store model folder holding saved_model/ and signature.json")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    m = commands.add_parser("seed-manifold", help="time the seed's per-point decoder.predict loop; prints JSON")
    m.add_argument("--model-dir", type=Path, required=True, help="a decoder's store model folder")
    m.add_argument("--calls", type=int, default=50, help="calls to measure (the full loop is n*n)")
    m.add_argument("--n", type=int, default=30)
    args = parser.parse_args(argv)
    if not (args.model_dir / "saved_model").is_dir():
        print(f"baseline: {args.model_dir} has no saved_model/ (dev stores may lack it)", file=sys.stderr)
        return 2
    if args.command == "serve":
        return serve(args.model_dir, args.host, args.port)
    print(json.dumps(seed_manifold(args.model_dir, max(1, min(args.calls, args.n * args.n)), args.n)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
