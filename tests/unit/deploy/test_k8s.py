"""deploy/k8s: every variant renders with `kubectl kustomize`, every rendered manifest is valid Kubernetes,
and the pieces agree with each other and the server."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from deploy import manifests
from serving.settings import Settings, unknown_env_names

VARIANTS = sorted(manifests.KUSTOMIZATIONS)


def require_kubectl() -> str:
    # A missing or old kubectl must fail these tests, never skip them: a skip would hide a missing install step.
    try:
        return manifests.kubectl()
    except manifests.ManifestError as e:
        pytest.fail(str(e), pytrace=False)


def render(variant: str) -> list[dict]:
    require_kubectl()
    return manifests.render(manifests.KUSTOMIZATIONS[variant])


def rendered(variant: str) -> dict[str, dict]:
    return {obj["kind"]: obj for obj in render(variant)}


def container(objects: dict[str, dict]) -> dict:
    (only,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_validates_against_the_kubernetes_schemas(variant: str) -> None:
    objects = render(variant)
    assert sorted(o["kind"] for o in objects) == ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
    assert manifests.validate(objects) == []


def test_every_manifest_file_is_rendered_or_is_a_patch() -> None:
    # A YAML file nobody references would escape validation.
    referenced = set()
    for directory in manifests.K8S_DIR.rglob("kustomization.yaml"):
        kustomization = yaml.safe_load(directory.read_text())
        referenced.update((directory.parent / r).resolve() for r in kustomization.get("resources", []))
        referenced.update((directory.parent / p["path"]).resolve() for p in kustomization.get("patches", []))
        referenced.add(directory.resolve())
    files = {p.resolve() for p in manifests.K8S_DIR.rglob("*.yaml")}
    assert files - referenced == set()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "prot"), 3000, "'prot' was unexpected"),
        (("spec", "replicas"), "two", "not of type 'integer'"),
        (("spec", "template", "spec", "terminationGracePeriod"), 40, "was unexpected"),
    ],
)
def test_validation_catches_mistakes(path: tuple, value: object, message: str) -> None:
    objects = copy.deepcopy(render("cpu"))
    target = next(o for o in objects if o["kind"] == "Deployment")
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    errors = manifests.validate(objects, versions=("1.37",))
    assert len(errors) == 1 and "Deployment/digits" in errors[0] and message in errors[0], errors


@pytest.mark.parametrize("variant", VARIANTS)
def test_probes_ports_and_service_agree(variant: str) -> None:
    objects = rendered(variant)
    c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 3000, "grpc": 8500}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"
    service = objects["Service"]["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {"http": (3000, "http"), "grpc": (8500, "grpc")}
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for selector in (service["selector"], objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                     objects["Deployment"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= pod_labels.items()
    target = objects["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", objects["Deployment"]["metadata"]["name"])
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_is_valid_server_configuration(variant: str) -> None:
    objects = rendered(variant)
    data = objects["ConfigMap"]["data"]
    assert container(objects)["envFrom"] == [{"configMapRef": {"name": objects["ConfigMap"]["metadata"]["name"]}}]
    assert unknown_env_names(data) == []
    settings = Settings.from_env(data)  # raises on a value the server would reject
    assert settings.host == "0.0.0.0" and (settings.http_port, settings.grpc_port) == (3000, 8500)


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_covers_prestop_and_drain(variant: str) -> None:
    objects = rendered(variant)
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    command = container(objects)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = Settings.from_env(objects["ConfigMap"]["data"]).drain_timeout_s
    # The launcher gives its children drain + 10 s before killing them (serving/__main__.py).
    assert pod["terminationGracePeriodSeconds"] >= float(command[1]) + drain + 10


def test_gpu_overlay_asks_for_a_gpu_node_and_the_gpu_image() -> None:
    cpu, gpu = rendered("cpu"), rendered("gpu")
    assert container(cpu)["image"] == "digits-serving:cpu" and container(gpu)["image"] == "digits-serving:gpu"
    assert "nvidia.com/gpu" not in container(cpu)["resources"]["limits"]
    assert container(gpu)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    pod = gpu["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert gpu["ConfigMap"]["data"]["SERVING_PROVIDERS"].startswith("cuda")
    assert gpu["HorizontalPodAutoscaler"]["spec"]["minReplicas"] >= 1
    # maxUnavailable keeps a one-replica deployment drainable.
    assert "maxUnavailable" in gpu["PodDisruptionBudget"]["spec"]


def test_pod_runs_as_the_image_user_with_a_read_only_root() -> None:
    objects = rendered("cpu")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1034
    c = container(objects)
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}
    # Everything the server writes (BentoML's home, ONNX Runtime's cache) must land on the /tmp volume.
    assert objects["ConfigMap"]["data"]["BENTOML_HOME"].startswith("/tmp/")
    assert objects["ConfigMap"]["data"]["XDG_CACHE_HOME"].startswith("/tmp/")


def test_kubectl_renders_with_kustomize_5() -> None:
    # kubectl() raises with an install hint when kubectl is missing or embeds kustomize < 5 (Debian's kubernetes-client).
    assert Path(require_kubectl()).name == "kubectl"


def test_render_reports_what_kubectl_says(tmp_path: Path) -> None:
    require_kubectl()
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(manifests.ManifestError, match="missing.yaml"):
        manifests.render(tmp_path)


def test_a_missing_or_old_kubectl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    manifests.kubectl.cache_clear()
    try:
        with pytest.raises(manifests.ManifestError, match="kubectl is not on PATH.*install kubectl"):
            manifests.kubectl()
        # kubectl 1.20 (Debian bookworm's kubernetes-client) reports no kustomizeVersion; 1.26 has kustomize 4.5.7.
        for version in ('{"clientVersion": {"gitVersion": "v1.20.5"}}', '{"kustomizeVersion": "v4.5.7"}'):
            fake = tmp_path / "kubectl"
            fake.write_text(f"#!/bin/sh\necho '{version}'\n")
            fake.chmod(0o755)
            manifests.kubectl.cache_clear()
            with pytest.raises(manifests.ManifestError, match="kustomize >= 5.0 is needed"):
                manifests.kubectl()
    finally:
        manifests.kubectl.cache_clear()
