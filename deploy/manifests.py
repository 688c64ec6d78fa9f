"""Kubernetes manifests under ``deploy/k8s``: render a kustomization with ``kubectl kustomize`` and
validate every object it produces.

``render`` runs ``kubectl kustomize DIR`` (kustomize >= 5 built into kubectl) and parses its YAML
stream, so what the tests validate is what ``kubectl apply -k DIR`` sends. ``validate`` checks
Kubernetes kinds against the OpenAPI schemas that ``kubernetes-validate`` bundles, and custom
resources (KServe, KEDA) against their CRDs' schemas vendored in ``deploy/schemas``
(``deploy/crds.py``), strictly in both cases: unknown fields are errors.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deploy import crds

K8S_DIR = Path(__file__).resolve().parent / "k8s"
KUSTOMIZATIONS = {
    "cpu": K8S_DIR / "base",
    "gpu": K8S_DIR / "overlays" / "gpu",
    "keda": K8S_DIR / "overlays" / "keda",
    "gpu-keda": K8S_DIR / "overlays" / "gpu-keda",
    "kserve": K8S_DIR / "kserve" / "base",
    "kserve-gpu": K8S_DIR / "kserve" / "overlays" / "gpu",
}
# The oldest and the newest Kubernetes minor version the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30", "1.37")
# Components, `labels` and JSON 6902 patches with targets are older, but the manifests are rendered
# and tested with kustomize 5; Debian's own kubernetes-client (kubectl 1.20, kustomize 2) cannot.
MIN_KUSTOMIZE = (5, 0)
INSTALL_HINT = (
    "install kubectl >= 1.27 (it embeds kustomize 5): `apt-get install kubectl` from the Kubernetes "
    "(pkgs.k8s.io) or Google Cloud apt repository, or a release binary from dl.k8s.io"
)


class ManifestError(RuntimeError):
    """kubectl is missing or too old, or ``kubectl kustomize`` refused a kustomization."""


@cache
def kubectl() -> str:
    """The kubectl to render with; ManifestError (saying how to get one) when there is none or it is too old."""
    path = shutil.which("kubectl")
    if path is None:
        raise ManifestError(f"kubectl is not on PATH; the manifests are rendered with `kubectl kustomize`: {INSTALL_HINT}")
    result = subprocess.run([path, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    try:
        kustomize = json.loads(result.stdout).get("kustomizeVersion", "")
    except json.JSONDecodeError:
        kustomize = ""
    found = re.match(r"v?(\d+)\.(\d+)", kustomize)
    if found is None or (int(found[1]), int(found[2])) < MIN_KUSTOMIZE:
        raise ManifestError(
            f"{path} embeds kustomize {kustomize or '(unknown: older than kubectl 1.24)'}; kustomize >= "
            f"{'.'.join(map(str, MIN_KUSTOMIZE))} is needed: {INSTALL_HINT}"
        )
    return path


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize directory`` produces, in its order."""
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise ManifestError(f"`kubectl kustomize {directory}` failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def validate(objects: list[dict[str, Any]], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    """Schema errors (empty when valid), one line per object and error (and Kubernetes version, for Kubernetes kinds)."""
    import kubernetes_validate

    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        vendored = crds.SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
        if vendored is not None:
            errors += [f"{name} ({vendored.source} CRD): {error}" for error in crds.validate(obj)]
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                errors.append(f"{name} (Kubernetes {version}): {where}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{name} (Kubernetes {version}): {e.message}")
    return errors


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as one multi-document YAML stream (what ``kubectl apply -f -`` reads)."""
    return yaml.safe_dump_all(objects, sort_keys=False)
