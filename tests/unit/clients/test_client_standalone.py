"""The client package stands alone: it needs ``contract`` (and numpy, Pillow, grpcio, httpx), never the server,
the training code or TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
FORBIDDEN = ("serving", "training", "loadtests", "deploy", "tensorflow", "tensorflow_serving", "keras", "bentoml", "onnxruntime")


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


# The model store's own module lists the store with BentoML's public API (inside the function that lists it);
# training, serving and loadtests use it, clients never import it.
STORE_SIDE = {ROOT / "contract" / "store.py": {"bentoml"}}


def test_no_client_module_imports_the_server_or_training() -> None:
    for path in sorted((ROOT / "clients").rglob("*.py")) + sorted((ROOT / "contract").glob("*.py")):
        assert not imported_roots(path) & (set(FORBIDDEN) - STORE_SIDE.get(path, set())), path
    assert not any("contract.store" in p.read_text() for p in (ROOT / "clients").rglob("*.py"))


BLOCKED_RUN = r"""
import importlib.abc, io, sys
BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, Block())
import numpy as np
from PIL import Image
import clients, clients.cli, clients.grpc, clients.http
from clients import connect
from clients.errors import UnavailableError

buf = io.BytesIO()
Image.fromarray((np.eye(40) * 255).astype(np.uint8)).save(buf, "PNG")
client = connect(grpc="127.0.0.1:9", timeout=2, retries=0)  # nothing listens: preprocessing and encoding run, the call fails
try:
    client.classify_image(buf.getvalue(), model="lstm")
except UnavailableError:
    print("unavailable as expected")
client.close()
"""


def test_clients_work_where_the_server_and_tensorflow_are_not_installed() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(FORBIDDEN)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "unavailable as expected"
