"""Custom resources in deploy/k8s (KServe ``InferenceService``, KEDA ``ScaledObject``): validate them
against their CRDs' ``openAPIV3Schema``, vendored in ``deploy/schemas`` (see its README).

A CRD's schema is a Kubernetes *structural* schema, not plain JSON Schema; :func:`to_json_schema`
translates it the way the API server reads it, strictly, as ``kubectl apply`` does by default
(server-side field validation ``Strict``):

- an object's fields are the ones its schema lists: any other is an error, unless the schema says
  ``x-kubernetes-preserve-unknown-fields: true`` or gives ``additionalProperties`` (a map);
- ``x-kubernetes-int-or-string`` accepts an integer or a string; ``nullable`` accepts null;
- the root ``metadata`` is an ObjectMeta (the API server checks it, not the CRD): it is checked
  against the ObjectMeta schema that kubernetes-validate bundles.

Not checked here: CEL rules (``x-kubernetes-validations``; :data:`CEL_RULES` lists the ones the
vendored schemas have, and :func:`semantic_errors` re-implements them), ``format`` (int32 ranges,
quantities), and what the operators' admission webhooks and controllers check. For KEDA triggers,
whose ``metadata`` is a free string map in the CRD, :func:`semantic_errors` checks the keys that
KEDA's prometheus and cpu scalers read.

``python -m deploy.crds CRD.yaml VERSION OUT.json[.gz]`` extracts one version's schema from a CRD file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# kubernetes-validate's bundled schema set whose ObjectMeta is used for custom resources' metadata.
OBJECT_META_FROM = "v1.37.0-local-strict"


@dataclass(frozen=True)
class VendoredSchema:
    """One CRD version's openAPIV3Schema, where it came from, and the file it is kept in."""

    api_version: str
    kind: str
    file: str
    repo: str
    tag: str
    commit: str
    path: str

    @property
    def source(self) -> str:
        return f"{self.repo}@{self.tag}"


SCHEMAS: dict[tuple[str, str], VendoredSchema] = {
    ("serving.kserve.io/v1beta1", "InferenceService"): VendoredSchema(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        "inferenceservices.serving.kserve.io-v1beta1.json.gz",
        "kserve/kserve",
        "v0.20.0",
        "1fb781055dd1567164358233e1125142ca6ef1fe",
        "config/crd/full/serving.kserve.io_inferenceservices.yaml",
    ),
    ("keda.sh/v1alpha1", "ScaledObject"): VendoredSchema(
        "keda.sh/v1alpha1",
        "ScaledObject",
        "scaledobjects.keda.sh-v1alpha1.json",
        "kedacore/keda",
        "v2.20.2",
        "68a5b5028f35b22d50597c69819ab32c4e92f21a",
        "config/crd/bases/keda.sh_scaledobjects.yaml",
    ),
}

# Every CEL rule in the vendored schemas, by kind; semantic_errors() implements each one.
CEL_RULES = {
    "ScaledObject": {
        "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) ? self.maxReplicaCount : 100)",
    },
    "InferenceService": set(),
}

# The trigger metadata KEDA's scalers read (kedacore/keda v2.20.2, pkg/scalers/prometheus_scaler.go and
# cpu_memory_scaler.go, the `keda:"name=..."` tags): required keys, then every key they accept.
KEDA_TRIGGER_METADATA = {
    "prometheus": (
        {"serverAddress", "query", "threshold"},
        {
            "serverAddress",
            "query",
            "queryParameters",
            "threshold",
            "activationThreshold",
            "namespace",
            "customHeaders",
            "ignoreNullValues",
            "unsafeSsl",
            "awsRegion",
            "timeout",
            "identityOwner",
        },
    ),
    "cpu": ({"value"}, {"value", "containerName"}),
}
KEDA_NUMERIC_METADATA = {"threshold", "activationThreshold", "value"}
KEDA_BOOLEAN_METADATA = {"ignoreNullValues", "unsafeSsl"}
KEDA_METRIC_TYPES = {"prometheus": {"Value", "AverageValue"}, "cpu": {"Utilization", "AverageValue"}}
KEDA_DEFAULT_MAX_REPLICAS = 100


def _read(path: Path) -> Any:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(data)


@cache
def openapi_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The vendored openAPIV3Schema, as upstream wrote it."""
    return _read(SCHEMA_DIR / SCHEMAS[(api_version, kind)].file)


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A structural schema (node) as strict JSON Schema (draft 2020-12)."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        elif key != "nullable":
            out[key] = value
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    is_object = node.get("type") == "object" or "properties" in node
    if is_object and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@cache
def _validator(api_version: str, kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    schema = to_json_schema(openapi_schema(api_version, kind))
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    definitions = resources.files("kubernetes_validate") / "kubernetes-json-schema" / OBJECT_META_FROM / "_definitions.json"
    registry = Resource.from_contents(json.loads(definitions.read_text())) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """Where and how ``obj`` breaks its CRD's schema (empty when it fits); KeyError for a kind with no vendored schema."""
    validator = _validator(obj.get("apiVersion"), obj.get("kind"))
    errors = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors]


def cel_rules(node: Any) -> set[str]:
    """Every ``x-kubernetes-validations`` rule in a schema."""
    found: set[str] = set()
    if isinstance(node, dict):
        found.update(rule["rule"] for rule in node.get("x-kubernetes-validations", ()))
        for value in node.values():
            found |= cel_rules(value)
    elif isinstance(node, list):
        for value in node:
            found |= cel_rules(value)
    return found


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def semantic_errors(obj: dict[str, Any]) -> list[str]:
    """What the CRD schema cannot say: its CEL rules, and the KEDA trigger metadata the scalers read."""
    if obj.get("kind") != "ScaledObject":
        return []
    spec = obj.get("spec", {})
    errors = []
    low, high = spec.get("minReplicaCount"), spec.get("maxReplicaCount", KEDA_DEFAULT_MAX_REPLICAS)
    if low is not None and low > high:
        errors.append(f"spec: minReplicaCount {low} must be less than or equal to maxReplicaCount {high}")
    for i, trigger in enumerate(spec.get("triggers", [])):
        where, kind = f"spec.triggers.{i}", trigger.get("type")
        if kind not in KEDA_TRIGGER_METADATA:
            errors.append(f"{where}.type: {kind!r} is not a trigger this check knows ({sorted(KEDA_TRIGGER_METADATA)})")
            continue
        required, known = KEDA_TRIGGER_METADATA[kind]
        metadata = trigger.get("metadata", {})
        errors += [f"{where}.metadata: {key!r} is required by the {kind} scaler" for key in sorted(required - set(metadata))]
        errors += [
            f"{where}.metadata: {key!r} is not read by the {kind} scaler (known: {sorted(known)})" for key in sorted(set(metadata) - known)
        ]
        errors += [
            f"{where}.metadata.{key}: {metadata[key]!r} is not a number"
            for key in sorted(KEDA_NUMERIC_METADATA & set(metadata))
            if isinstance(metadata[key], str) and not _is_number(metadata[key])
        ]
        errors += [
            f"{where}.metadata.{key}: {metadata[key]!r} is not true or false"
            for key in sorted(KEDA_BOOLEAN_METADATA & set(metadata))
            if isinstance(metadata[key], str) and metadata[key].lower() not in ("true", "false")
        ]
        metric_type = trigger.get("metricType")
        if metric_type is not None and metric_type not in KEDA_METRIC_TYPES[kind]:
            errors.append(f"{where}.metricType: {metric_type!r} is not one of {sorted(KEDA_METRIC_TYPES[kind])} for {kind}")
    return errors


def validate(obj: dict[str, Any]) -> list[str]:
    """Schema errors, then semantic ones."""
    return schema_errors(obj) + semantic_errors(obj)


def extract(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """One served version's openAPIV3Schema from a CustomResourceDefinition."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return entry["schema"]["openAPIV3Schema"]
    raise SystemExit(f"{crd['metadata']['name']} has no version {version!r}: {[v['name'] for v in crd['spec']['versions']]}")


def write(schema: dict[str, Any], out: Path) -> None:
    """Indented JSON (diffs stay readable); compact and gzipped, reproducibly (no time), when ``out`` ends in .gz."""
    if out.suffix == ".gz":
        out.write_bytes(gzip.compress(json.dumps(schema, sort_keys=True, separators=(",", ":")).encode() + b"\n", mtime=0))
    else:
        out.write_text(json.dumps(schema, sort_keys=True, indent=1) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.crds", description="extract a CRD version's openAPIV3Schema")
    parser.add_argument("crd", type=Path, help="a CustomResourceDefinition YAML file (e.g. from the upstream repository)")
    parser.add_argument("version", help="the CRD version, e.g. v1beta1")
    parser.add_argument("out", type=Path, help="the JSON file to write (gzipped if it ends in .gz)")
    args = parser.parse_args(argv)
    write(extract(yaml.safe_load(args.crd.read_text()), args.version), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
