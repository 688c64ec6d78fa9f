"""deploy/k8s: every variant renders with `kubectl kustomize`, every rendered object is valid (Kubernetes
API schemas; KServe and KEDA CRD schemas), and the pieces agree with each other and with the server."""

from __future__ import annotations

import copy
import dataclasses
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from deploy import crds, manifests
from serving.core.metrics import engine_metrics
from serving.settings import Settings, unknown_env_names

VARIANTS = sorted(manifests.KUSTOMIZATIONS)
DEPLOYMENT_VARIANTS = ["cpu", "gpu", "keda", "gpu-keda"]
KSERVE_VARIANTS = ["kserve", "kserve-gpu"]
GPU_VARIANTS = {"gpu", "gpu-keda", "kserve-gpu"}
KINDS = {
    "cpu": ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"],
    "keda": ["ConfigMap", "Deployment", "PodDisruptionBudget", "ScaledObject", "Service"],
    "kserve": ["ConfigMap", "InferenceService", "PodDisruptionBudget"],
}
KINDS.update({"gpu": KINDS["cpu"], "gpu-keda": KINDS["keda"], "kserve-gpu": KINDS["kserve"]})
# What KServe (v0.20, Standard mode) puts on a predictor's Deployment and pods: name <isvc>-predictor,
# labels serving.kserve.io/inferenceservice=<isvc> and component=predictor (pkg/constants).
KSERVE_POD_LABELS = {"serving.kserve.io/inferenceservice": "{isvc}", "component": "predictor"}
KSERVE_AUTOSCALER_CLASSES = {"hpa", "external", "keda", "none"}
# Variables the pod gets besides SERVING_* settings: BentoML's and the cache (ConfigMap), and KServe's PROTOCOL.
OTHER_ENV = {"BENTOML_HOME", "XDG_CACHE_HOME", "BENTOML_DO_NOT_TRACK", "PROTOCOL"}


def require_kubectl() -> str:
    # A missing or old kubectl must fail these tests, never skip them: a skip would hide a missing install step.
    try:
        return manifests.kubectl()
    except manifests.ManifestError as e:
        pytest.fail(str(e), pytrace=False)


@cache
def _render(variant: str) -> tuple[dict, ...]:
    require_kubectl()
    return tuple(manifests.render(manifests.KUSTOMIZATIONS[variant]))


def objects(variant: str) -> list[dict]:
    return copy.deepcopy(list(_render(variant)))


def by_kind(variant: str) -> dict[str, dict]:
    found = objects(variant)
    kinds = [o["kind"] for o in found]
    assert len(set(kinds)) == len(kinds), kinds
    return {o["kind"]: o for o in found}


def pod_spec(objs: dict[str, dict]) -> dict:
    """The pod template's spec: a Deployment's, or the InferenceService predictor's (an inline PodSpec)."""
    if "Deployment" in objs:
        return objs["Deployment"]["spec"]["template"]["spec"]
    return objs["InferenceService"]["spec"]["predictor"]


def container(objs: dict[str, dict]) -> dict:
    (only,) = pod_spec(objs)["containers"]
    return only


def pod_labels(objs: dict[str, dict]) -> dict[str, str]:
    """The labels the serving pods carry (for KServe: the InferenceService's, the predictor's, and KServe's own)."""
    if "Deployment" in objs:
        return objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    isvc = objs["InferenceService"]
    name = isvc["metadata"]["name"]
    return {
        **isvc["metadata"].get("labels", {}),
        **isvc["spec"]["predictor"].get("labels", {}),
        **{k: v.format(isvc=name) for k, v in KSERVE_POD_LABELS.items()},
    }


def workload_name(objs: dict[str, dict]) -> str:
    """The Deployment the pods belong to (KServe's is <isvc>-predictor)."""
    if "Deployment" in objs:
        return objs["Deployment"]["metadata"]["name"]
    return objs["InferenceService"]["metadata"]["name"] + "-predictor"


def pod_name_example(objs: dict[str, dict]) -> str:
    return f"{workload_name(objs)}-7d9f8b6c5d-x2k4q"  # <deployment>-<pod-template-hash>-<suffix>


def queue_queries(objs: dict[str, dict]) -> list[str]:
    """Every PromQL query an autoscaler of the variant runs."""
    if "ScaledObject" in objs:
        return [t["metadata"]["query"] for t in objs["ScaledObject"]["spec"]["triggers"] if t["type"] == "prometheus"]
    if "InferenceService" in objs:
        metrics = objs["InferenceService"]["spec"]["predictor"].get("autoScaling", {}).get("metrics", [])
        return [m["external"]["metric"]["query"] for m in metrics if m["type"] == "External"]
    return []


# ------------------------------------------------------------------ rendering and validation


def test_kubectl_renders_with_kustomize_5() -> None:
    # kubectl() raises with an install hint when kubectl is missing or embeds kustomize < 5 (Debian's kubernetes-client).
    assert Path(require_kubectl()).name == "kubectl"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rendered_object_validates(variant: str) -> None:
    found = objects(variant)
    assert sorted(o["kind"] for o in found) == KINDS[variant]
    assert manifests.validate(found) == []


def _used_files(directory: Path) -> set[Path]:
    kustomization = directory / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text())
    used = {kustomization.resolve()}
    for entry in spec.get("resources", []) + spec.get("components", []):
        target = (directory / entry).resolve()
        used |= _used_files(target) if target.is_dir() else {target}
    used |= {(directory / p["path"]).resolve() for p in spec.get("patches", []) if "path" in p}
    return used


def test_every_manifest_file_is_used_by_a_variant() -> None:
    # A YAML file no variant uses would escape validation.
    used = set().union(*(_used_files(d) for d in manifests.KUSTOMIZATIONS.values()))
    assert {p.resolve() for p in manifests.K8S_DIR.rglob("*.yaml")} - used == set()


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


def _set(obj: dict, path: tuple, value: object) -> None:
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


@pytest.mark.parametrize(
    ("variant", "kind", "path", "value", "message"),
    [
        (
            "cpu",
            "Deployment",
            ("spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "prot"),
            3000,
            "'prot' was unexpected",
        ),
        ("cpu", "Deployment", ("spec", "replicas"), "two", "not of type 'integer'"),
        ("cpu", "Deployment", ("spec", "template", "spec", "terminationGracePeriod"), 40, "was unexpected"),
        # KServe: a misspelled field, a field the custom predictor does not have, a wrong type, a wrong enum
        (
            "kserve",
            "InferenceService",
            ("spec", "predictor", "containers", 0, "readinessProbe", "httpGet", "prot"),
            3000,
            "'prot' was unexpected",
        ),
        ("kserve", "InferenceService", ("spec", "predictor", "protocolVersion"), "v2", "'protocolVersion' was unexpected"),
        ("kserve", "InferenceService", ("spec", "predictor", "minReplicas"), "two", "'two' is not of type 'integer'"),
        ("kserve", "InferenceService", ("spec", "predictor", "autoScaling", "metrics", 0, "type"), "Prometheus", "is not one of"),
        ("kserve", "InferenceService", ("metadata", "annotation"), {}, "'annotation' was unexpected"),
        # KEDA: the schema, then what its prometheus scaler reads (the CRD leaves trigger metadata free)
        ("keda", "ScaledObject", ("spec", "maxReplicas"), 10, "'maxReplicas' was unexpected"),
        ("keda", "ScaledObject", ("spec", "pollingInterval"), "15", "'15' is not of type 'integer'"),
        ("keda", "ScaledObject", ("spec", "triggers", 0, "metadata", "threshold"), 2, "2 is not of type 'string'"),
        ("keda", "ScaledObject", ("spec", "triggers", 0, "metadata", "treshold"), "2", "'treshold' is not read by the prometheus scaler"),
        ("keda", "ScaledObject", ("spec", "triggers", 0, "metadata", "threshold"), "2ms", "'2ms' is not a number"),
        ("keda", "ScaledObject", ("spec", "triggers", 0, "metricType"), "Average", "is not one of"),
        ("keda", "ScaledObject", ("spec", "minReplicaCount"), 11, "must be less than or equal to maxReplicaCount"),
    ],
)
def test_validation_catches_mistakes(variant: str, kind: str, path: tuple, value: object, message: str) -> None:
    found = objects(variant)
    target = next(o for o in found if o["kind"] == kind)
    _set(target, path, value)
    errors = manifests.validate(found, versions=("1.37",))
    assert len(errors) == 1 and f"{kind}/{target['metadata']['name']}" in errors[0] and message in errors[0], errors


def test_a_required_keda_field_missing_is_an_error() -> None:
    found = objects("keda")
    trigger = next(o for o in found if o["kind"] == "ScaledObject")["spec"]["triggers"][0]
    del trigger["metadata"]["serverAddress"]
    assert manifests.validate(found, versions=("1.37",)) == [
        "ScaledObject/digits (kedacore/keda@v2.20.2 CRD): spec.triggers.0.metadata: 'serverAddress' is required by the prometheus scaler"
    ]


def test_structural_schemas_translate_strictly() -> None:
    schema = crds.to_json_schema(
        {
            "type": "object",
            "properties": {
                "port": {"x-kubernetes-int-or-string": True},
                "maybe": {"type": "string", "nullable": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "empty": {"type": "object"},
            },
        }
    )
    import jsonschema

    ok = {"port": "http", "maybe": None, "labels": {"a": "b"}, "free": {"anything": [1]}, "empty": {}}
    jsonschema.Draft202012Validator(schema).validate(ok)
    jsonschema.Draft202012Validator(schema).validate({**ok, "port": 3000})
    for bad in ({**ok, "extra": 1}, {**ok, "empty": {"x": 1}}, {**ok, "labels": {"a": 1}}, {**ok, "port": 1.5}):
        assert not jsonschema.Draft202012Validator(schema).is_valid(bad), bad


@pytest.mark.parametrize("key", sorted(crds.SCHEMAS))
def test_vendored_schemas_are_named_in_their_readme_and_their_cel_rules_are_checked(key: tuple[str, str]) -> None:
    vendored = crds.SCHEMAS[key]
    readme = (crds.SCHEMA_DIR / "README.md").read_text()
    line = next((row for row in readme.splitlines() if f"`{vendored.file}`" in row), "")
    for fact in (vendored.repo, vendored.tag, vendored.commit, vendored.path, vendored.api_version, vendored.kind):
        assert fact in line, (fact, line)
    schema = crds.openapi_schema(*key)
    assert set(schema["properties"]) >= {"apiVersion", "kind", "metadata", "spec"}
    # A refreshed schema with a new CEL rule fails here until deploy/crds.py checks it.
    assert crds.cel_rules(schema) == crds.CEL_RULES[vendored.kind]


def test_every_vendored_file_is_in_use() -> None:
    files = {p.name for p in crds.SCHEMA_DIR.iterdir() if p.name != "README.md"}
    assert files == {v.file for v in crds.SCHEMAS.values()}


# ------------------------------------------------------------------ the pieces agree


@pytest.mark.parametrize("variant", DEPLOYMENT_VARIANTS)
def test_probes_ports_and_service_agree(variant: str) -> None:
    objs = by_kind(variant)
    c = container(objs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 3000, "grpc": 8500}
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["startupProbe"]["httpGet"]["path"] == "/livez"
    service = objs["Service"]["spec"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {"http": (3000, "http"), "grpc": (8500, "grpc")}
    labels = pod_labels(objs)
    for selector in (
        service["selector"],
        objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
        objs["Deployment"]["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_configmap_and_env_are_valid_server_configuration(variant: str) -> None:
    objs = by_kind(variant)
    data = objs["ConfigMap"]["data"]
    c = container(objs)
    assert c["envFrom"] == [{"configMapRef": {"name": objs["ConfigMap"]["metadata"]["name"]}}]
    env = {**data, **{e["name"]: e["value"] for e in c.get("env", [])}}
    assert unknown_env_names(env) == []
    assert {name for name in env if not name.startswith("SERVING_")} <= OTHER_ENV
    settings = Settings.from_env(env)  # raises on a value the server would reject
    assert settings.host == "0.0.0.0" and (settings.http_port, settings.grpc_port) == (3000, 8500)


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_covers_prestop_and_drain(variant: str) -> None:
    objs = by_kind(variant)
    command = container(objs)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = Settings.from_env(objs["ConfigMap"]["data"]).drain_timeout_s
    # The launcher gives its children drain + 10 s before killing them (serving/__main__.py).
    assert pod_spec(objs)["terminationGracePeriodSeconds"] >= float(command[1]) + drain + 10
    # The in-process drain delay comes before the drain, and BentoML kills a worker 30 s after SIGTERM.
    delay = Settings.from_env(objs["ConfigMap"]["data"]).drain_delay_s
    assert pod_spec(objs)["terminationGracePeriodSeconds"] >= float(command[1]) + delay + drain + 10
    assert delay + drain < 30


@pytest.mark.parametrize("variant", VARIANTS)
def test_gpu_variants_ask_for_a_gpu_node_and_the_gpu_image(variant: str) -> None:
    objs = by_kind(variant)
    c, pod = container(objs), pod_spec(objs)
    providers = Settings.from_env(objs["ConfigMap"]["data"]).providers
    if variant not in GPU_VARIANTS:
        assert c["image"] == "digits-cpu:latest" and "nvidia.com/gpu" not in c["resources"]["limits"]
        assert "nodeSelector" not in pod and providers == "cpu"
        return
    assert c["image"] == "digits:latest"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    assert providers.split(",")[0] == "cuda"
    # maxUnavailable keeps a one-replica deployment drainable.
    assert "maxUnavailable" in objs["PodDisruptionBudget"]["spec"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_pod_runs_as_the_image_user_with_a_read_only_root(variant: str) -> None:
    objs = by_kind(variant)
    pod, c = pod_spec(objs), container(objs)
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1034
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/tmp"}
    # Everything the server writes (BentoML's home, ONNX Runtime's cache) must land on the /tmp volume.
    assert objs["ConfigMap"]["data"]["BENTOML_HOME"].startswith("/tmp/")
    assert objs["ConfigMap"]["data"]["XDG_CACHE_HOME"].startswith("/tmp/")


@pytest.mark.parametrize(("kserve", "deployment"), [("kserve", "cpu"), ("kserve-gpu", "gpu")])
def test_kserve_predictor_runs_what_the_deployment_runs(kserve: str, deployment: str) -> None:
    isvc_objs, deploy_objs = by_kind(kserve), by_kind(deployment)
    predictor, pod = pod_spec(isvc_objs), pod_spec(deploy_objs)
    ours, theirs = container(isvc_objs), container(deploy_objs)
    assert ours["name"] == "kserve-container"  # what KServe names a custom predictor's only container anyway
    assert ours["env"] == [{"name": "PROTOCOL", "value": "v2"}]  # a custom predictor's protocolVersion
    same = (
        "image",
        "imagePullPolicy",
        "envFrom",
        "ports",
        "resources",
        "startupProbe",
        "livenessProbe",
        "readinessProbe",
        "lifecycle",
        "securityContext",
        "volumeMounts",
    )
    assert {k: ours.get(k) for k in same} == {k: theirs.get(k) for k in same}
    for key in ("securityContext", "terminationGracePeriodSeconds", "volumes", "nodeSelector", "tolerations"):
        assert predictor.get(key) == pod.get(key), key
    assert isvc_objs["ConfigMap"] == deploy_objs["ConfigMap"]
    assert predictor["annotations"] == deploy_objs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert predictor["deploymentStrategy"] == deploy_objs["Deployment"]["spec"]["strategy"]
    # First port = what KServe's Service maps port 80 to; a port named *grpc* gets appProtocol kubernetes.io/h2c.
    assert [p["name"] for p in ours["ports"]] == ["http", "grpc"]


@pytest.mark.parametrize("variant", KSERVE_VARIANTS)
def test_kserve_mode_and_autoscaling_are_what_kserve_accepts(variant: str) -> None:
    objs = by_kind(variant)
    isvc = objs["InferenceService"]
    annotations = isvc["metadata"]["annotations"]
    # Standard (raw Deployment) mode: every container port on the Service, and KEDA is allowed.
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] in KSERVE_AUTOSCALER_CLASSES
    predictor = isvc["spec"]["predictor"]
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    assert "scaleMetric" not in predictor  # KServe refuses scaleMetric with KEDA
    (metric,) = predictor["autoScaling"]["metrics"]
    external = metric["external"]
    assert (metric["type"], external["metric"]["backend"]) == ("External", "prometheus")
    # KServe's webhook wants a query and target.value; it copies value into the trigger's threshold and
    # sets no metricType, so KEDA applies AverageValue (test_queue_time_triggers_are_one_rule).
    assert external["metric"]["query"] and external["target"]["type"] == "Value" and float(external["target"]["value"]) > 0
    # KServe makes no PodDisruptionBudget: ours selects the predictor pods by KServe's labels.
    assert objs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels(objs).items()


@pytest.mark.parametrize("variant", ["keda", "gpu-keda"])
def test_scaledobject_scales_the_deployment_on_queue_time(variant: str) -> None:
    objs = by_kind(variant)
    spec = objs["ScaledObject"]["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", workload_name(objs))
    assert spec["minReplicaCount"] <= spec["fallback"]["replicas"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]  # queue time only: no CPU trigger to outvote it
    assert trigger["type"] == "prometheus" and trigger["metricType"] == "AverageValue"
    # An empty answer must be an error, so that the fallback applies instead of a silent 0.
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    hpa_behavior = by_kind("cpu")["HorizontalPodAutoscaler"]["spec"]["behavior"]
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == hpa_behavior
    if variant == "gpu-keda":
        hpa = by_kind("gpu")["HorizontalPodAutoscaler"]["spec"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (hpa["minReplicas"], hpa["maxReplicas"])


def _queue_trigger(variant: str) -> tuple[str, str]:
    """(query, threshold) of the variant's queue-time trigger, as KEDA will run it."""
    objs = by_kind(variant)
    if "ScaledObject" in objs:
        (trigger,) = objs["ScaledObject"]["spec"]["triggers"]
        return trigger["metadata"]["query"], trigger["metadata"]["threshold"]
    (metric,) = objs["InferenceService"]["spec"]["predictor"]["autoScaling"]["metrics"]
    return metric["external"]["metric"]["query"], metric["external"]["target"]["value"]


@pytest.mark.parametrize("variant", ["keda", "gpu-keda", "kserve", "kserve-gpu"])
def test_queue_time_triggers_are_one_rule(variant: str) -> None:
    query, threshold = _queue_trigger(variant)
    reference_query, reference_threshold = _queue_trigger("keda")
    # The same rule on every workload; only the pod selector differs.
    assert re.sub(r'pod=~"[^"]+"', "", query) == re.sub(r'pod=~"[^"]+"', "", reference_query)
    assert threshold == reference_threshold and float(threshold) > 0
    # AverageValue (KServe allows nothing else): a total over the pods, a sum of rates, never a mean or a
    # quantile, which would not grow with the number of pods.
    assert query.startswith("sum(rate(model_queue_seconds_sum{") and query.endswith("[1m]))")
    assert "/" not in query.replace("[1m]", "") and "quantile" not in query


def _histograms_and_gauges() -> dict[str, str]:
    metrics = engine_metrics()
    return {family.name: family.type for f in dataclasses.fields(metrics) for family in getattr(metrics, f.name).describe()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_queries_read_metrics_the_server_exports_from_its_own_pods(variant: str) -> None:
    objs = by_kind(variant)
    queries = queue_queries(objs)
    assert bool(queries) == (variant not in ("cpu", "gpu"))
    exported = _histograms_and_gauges()
    pod_regex = re.compile(r'pod=~"([^"]+)"')
    for query in queries:
        series = set(re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{", query))
        assert series, query
        for name in series:
            base, _, suffix = name.rpartition("_")
            if suffix in ("sum", "count", "bucket"):
                assert exported.get(base) == "histogram", (name, exported)
            else:
                assert name in exported, (name, exported)
        assert "model_queue_seconds" in {s.rpartition("_")[0] for s in series}
        # The pod selector (PromQL regexes are anchored) takes this workload's pods and not the other's.
        for regex in pod_regex.findall(query):
            assert re.fullmatch(regex, pod_name_example(objs)), (regex, pod_name_example(objs))
            other = by_kind("kserve" if "Deployment" in objs else "cpu")
            assert not re.fullmatch(regex, pod_name_example(other)), (regex, pod_name_example(other))
        assert 'namespace="' in query


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_autoscaler_per_workload(variant: str) -> None:
    objs = by_kind(variant)
    scaled: list[str] = []
    for obj in objs.values():
        if obj["kind"] == "HorizontalPodAutoscaler":
            scaled.append(obj["spec"]["scaleTargetRef"]["name"])
        elif obj["kind"] == "ScaledObject":
            scaled.append(obj["spec"]["scaleTargetRef"]["name"])
        elif obj["kind"] == "InferenceService" and obj["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] != "none":
            scaled.append(workload_name(objs))  # KServe makes the HPA or ScaledObject itself
    assert scaled == [workload_name(objs)]


def test_deployment_and_kserve_pods_do_not_share_selectors() -> None:
    # Both may live in one namespace: the Deployment's Service and PDB must not pick up KServe's pods.
    deployment, kserve = by_kind("cpu"), by_kind("kserve")
    for selector in (deployment["Service"]["spec"]["selector"], deployment["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= pod_labels(kserve).items()
    assert not kserve["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()
