"""Kubernetes manifests under ``deploy/k8s``: render a kustomization and validate it against the API schemas.

``render`` implements the small subset of kustomize these manifests use
(``resources``, ``labels``, ``images``, JSON 6902 ``patches``) and refuses
anything else, so what the tests validate is what ``kubectl kustomize`` would
produce. ``validate`` checks every rendered object against the Kubernetes
OpenAPI schemas that ``kubernetes-validate`` bundles, in strict mode (unknown
fields are errors).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

K8S_DIR = Path(__file__).resolve().parent / "k8s"
KUSTOMIZATIONS = {"cpu": K8S_DIR / "base", "gpu": K8S_DIR / "overlays" / "gpu"}
# The oldest and the newest Kubernetes minor version the manifests must be valid for.
KUBERNETES_VERSIONS = ("1.30", "1.37")
SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "labels", "images", "patches"}
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "Pod": ("spec",),
}


class ManifestError(ValueError):
    """A kustomization this renderer cannot render faithfully, or a patch that does not apply."""


def documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of a file."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects a kustomization directory produces, in order."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = sorted(set(kustomization) - SUPPORTED_KEYS)
    if unknown:
        raise ManifestError(f"{directory}/kustomization.yaml uses {unknown}; this renderer supports {sorted(SUPPORTED_KEYS)}")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        objects.extend(render(target) if target.is_dir() else documents(target))
    objects = copy.deepcopy(objects)
    for spec in kustomization.get("labels", []):
        if set(spec) - {"pairs"}:
            raise ManifestError(f"{directory}: labels options {sorted(set(spec) - {'pairs'})} are not supported")
        for obj in objects:
            obj.setdefault("metadata", {}).setdefault("labels", {}).update(spec["pairs"])
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    for patch in kustomization.get("patches", []):
        operations = yaml.safe_load((directory / patch["path"]).read_text())
        if not isinstance(operations, list):
            raise ManifestError(f"{directory / patch['path']}: only JSON 6902 patches (a list of operations) are supported")
        target = patch.get("target", {})
        matched = [o for o in objects if all(o.get("kind") == v if k == "kind" else o["metadata"].get(k) == v for k, v in target.items())]
        if not matched:
            raise ManifestError(f"{directory}: patch {patch['path']} matches no object ({target})")
        for obj in matched:
            for operation in operations:
                apply_operation(obj, operation)
    return objects


def _set_image(objects: list[dict[str, Any]], image: dict[str, str]) -> None:
    for obj in objects:
        path = POD_SPEC_PATHS.get(obj.get("kind", ""))
        if path is None:
            continue
        spec: Any = obj
        for key in path:
            spec = spec.get(key, {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name != image["name"]:
                continue
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ManifestError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def apply_operation(obj: dict[str, Any], operation: dict[str, Any]) -> None:
    """Apply one JSON 6902 ``add`` / ``replace`` / ``remove`` / ``test`` operation in place."""
    op, parts = operation["op"], _pointer(operation["path"])
    parent: Any = obj
    for part in parts[:-1]:
        try:
            parent = parent[int(part)] if isinstance(parent, list) else parent[part]
        except (KeyError, IndexError, ValueError) as e:
            raise ManifestError(f"{op} {operation['path']}: {part!r} does not exist") from e
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        exists = index < len(parent)
    else:
        index, exists = last, last in parent  # type: ignore[assignment]
    if op in ("replace", "remove", "test") and not exists:
        raise ManifestError(f"{op} {operation['path']}: nothing there")
    if op == "add":
        if isinstance(parent, list):
            parent.insert(index, operation["value"])
        else:
            parent[index] = operation["value"]
    elif op == "replace":
        parent[index] = operation["value"]
    elif op == "remove":
        del parent[index]
    elif op == "test":
        if parent[index] != operation["value"]:
            raise ManifestError(f"test {operation['path']}: {parent[index]!r} != {operation['value']!r}")
    else:
        raise ManifestError(f"JSON patch operation {op!r} is not supported")


def validate(objects: list[dict[str, Any]], versions: tuple[str, ...] = KUBERNETES_VERSIONS) -> list[str]:
    """Schema errors (empty when valid), one line per object and Kubernetes version."""
    import kubernetes_validate

    errors = []
    for obj in objects:
        name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
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
