"""The service uses BentoML (and every other framework) through public APIs only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PRIVATE_MODULES = ("_bentoml_impl", "_bentoml_sdk", "bentoml._internal")
# Attributes BentoML sets on a service instance that are not API, even when reached through ``self``.
FRAMEWORK_PRIVATE = ("__self_proxy__",)
SOURCES = sorted(
    p
    for package in ("contract", "serving", "clients", "training", "deploy")
    for p in (ROOT / package).rglob("*.py")
    if "protos" not in p.relative_to(ROOT).parts  # generated code
)


def private_uses(tree: ast.AST) -> list[str]:
    """Imports of private framework modules, and ``x._name`` on anything but ``self``/``cls``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith(PRIVATE_MODULES)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(PRIVATE_MODULES):
            found.append(node.module)
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            dunder = node.attr.startswith("__") and node.attr.endswith("__")
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if node.attr in FRAMEWORK_PRIVATE or not (dunder or own):
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_attributes_or_modules(path: Path) -> None:
    assert private_uses(ast.parse(path.read_text(), str(path))) == []


def test_the_check_finds_what_the_old_service_did() -> None:
    old = "from _bentoml_impl.server import app\ndef f(self):\n    return self.__self_proxy__._async._session_manager._app\n"
    assert private_uses(ast.parse(old)) == [
        "_bentoml_impl.server",
        "line 3: ._app",
        "line 3: ._session_manager",
        "line 3: ._async",
        "line 3: .__self_proxy__",
    ]
