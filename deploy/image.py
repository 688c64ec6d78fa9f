"""Container images without a registry: a Debian base, a wheelhouse from the pins, one Dockerfile.

The image is built from a Bento of the local store (``python -m deploy bento``) by our own
Dockerfile (``deploy/docker/Dockerfile``), not by ``bentoml containerize``: BentoML's generated
Dockerfile copies ``uv`` from a registry image and installs packages from an index inside the build,
and neither is reachable here or in CI. Instead:

1. **base** (``BASE_IMAGE``): ``python:3.11-slim`` where a registry is reachable; where none is,
   :func:`build_base` makes an equivalent from Debian's own packages (``debootstrap --variant=minbase``
   + ``python3``, ``python3-venv``, ``ca-certificates``; ``docker import``), with ``python`` and
   ``python3`` in ``/usr/local/bin`` as in the slim image.
2. **wheelhouse**: :func:`download_wheels` runs ``pip download`` on the host (its own pip
   configuration) for the Bento's pinned requirements, constrained by ``requirements.lock`` so every
   transitive package is the version the tests ran; the image installs it with ``--no-index``.
3. **context**: the Bento (sources, ``bento.yaml``), its models copied from the store by tag, the
   wheelhouse and the Dockerfile; ``docker build`` tags ``<name>:<bento version>`` and ``<name>:latest``.

No registry or index host name appears here: the Debian mirror comes from this machine's apt
sources (or ``DEBIAN_MIRROR``), pip's index from pip's configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deploy import bento

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
LOCK = REPO / "requirements.lock"
DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE = "digits-base:bookworm"  # what `make base-image` builds
SUITE = "bookworm"  # Debian 12: Python 3.11, as python:3.11-slim
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
IMAGES = {"cpu": "digits-cpu", "gpu": "digits"}
# Not pulled in by the Bento's requirements, but what the service runs on when present (uvicorn picks them).
SPEED_PACKAGES = ("uvloop", "httptools")
UID = 1034  # BentoML's user id in its images; numeric, so Kubernetes' runAsNonRoot can check it


class ImageError(RuntimeError):
    """A step of the image build failed; the message says which and what to do."""


def run(cmd: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(list(cmd), check=True, **kwargs)


def docker_has_image(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


# ---------------------------------------------------------------- (1) the base image


def debian_mirror() -> str:
    """``DEBIAN_MIRROR``, else the first Debian archive URI of this machine's apt sources."""
    if os.environ.get("DEBIAN_MIRROR"):
        return os.environ["DEBIAN_MIRROR"]
    sources = sorted(Path("/etc/apt").glob("sources.list.d/*.sources")) + [Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in uri and uri.rstrip("/").endswith("/debian"):
                return uri
    raise ImageError("no Debian mirror in /etc/apt sources; set DEBIAN_MIRROR to a Debian archive URL")


def build_base(tag: str = LOCAL_BASE, rebuild: bool = False) -> str:
    """A python:3.11-slim equivalent from Debian's packages, imported as ``tag`` (kept when it exists)."""
    if docker_has_image(tag) and not rebuild:
        print(f"base image {tag} exists (rebuild: --rebuild)", flush=True)
        return tag
    if shutil.which("debootstrap") is None:
        raise ImageError("debootstrap is missing: apt-get install debootstrap")
    if os.geteuid() != 0:
        raise ImageError("debootstrap needs root")
    with tempfile.TemporaryDirectory(prefix="digits-base-") as tmp:
        root = Path(tmp) / "root"
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), debian_mirror()])
        # What a runtime image does not need: apt's lists and caches, docs, man pages, locales.
        for rel in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            shutil.rmtree(root / rel, ignore_errors=True)
            (root / rel).mkdir(parents=True, exist_ok=True)
        for name in ("python", "python3"):
            link = root / "usr/local/bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to("/usr/bin/python3")
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        changes = ["ENV LANG=C.UTF-8", "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]']
        cmd = ["docker", "import", *(a for c in changes for a in ("--change", c)), "-", tag]
        print("+ tar -C <root> -c . | " + " ".join(cmd), flush=True)
        subprocess.run(cmd, stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise ImageError("tar of the debootstrapped root failed")
    return tag


# ---------------------------------------------------------------- (2) the wheelhouse


def image_requirements(bento_path: Path) -> list[str]:
    """The Bento's pinned requirements, plus :data:`SPEED_PACKAGES` at their ``requirements.lock`` pins."""
    lines = [ln.strip() for ln in (bento_path / "env/python/requirements.txt").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    pins = bento.lock_pins()
    names = {bento.normalize(ln.split("==")[0]) for ln in lines}
    lines += [f"{name}=={pins[name]}" for name in SPEED_PACKAGES if name not in names and name in pins]
    return lines


def download_wheels(requirements: Sequence[str], dest: Path) -> Path:
    """``pip download`` of ``requirements`` (binary wheels only, transitive pins from requirements.lock) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    req = dest / "requirements.txt"
    req.write_text("\n".join(requirements) + "\n")
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--only-binary=:all:"]
    cmd += ["-r", str(req), "-c", str(LOCK), "-d", str(dest)]
    print("+ " + " ".join(cmd), flush=True)
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageError(f"pip download failed:\n{result.stderr[-3000:]}")
    return dest


# ---------------------------------------------------------------- (3) the context and the build


@dataclass(frozen=True)
class Image:
    """A built image: its tags, the Bento it holds and its size."""

    tags: tuple[str, ...]
    bento: str
    base: str
    size_mb: float

    def to_json(self) -> dict[str, Any]:
        return {"tags": list(self.tags), "bento": self.bento, "base": self.base, "size_mb": round(self.size_mb, 1)}


def dockerfile_env(bento_path: Path) -> dict[str, str]:
    """The Bento's ``envs`` (bentofile) as the image's environment."""
    info = yaml.safe_load((bento_path / "bento.yaml").read_text())
    return {e["name"]: str(e.get("value", "")) for e in info.get("envs") or []}


def render_dockerfile(env: dict[str, str]) -> str:
    """``deploy/docker/Dockerfile`` with the Bento's environment in place of its ``# @ENV`` line."""
    text = DOCKERFILE.read_text()
    lines = " \\\n    ".join(f"{k}={json.dumps(v)}" for k, v in sorted(env.items()))
    return text.replace("# @ENV", f"ENV {lines}" if env else "")


def stage(bento_path: Path, model_tags: Sequence[str], store: Path, wheels: Path, ctx: Path) -> None:
    """The build context: ``bento/`` (without its generated env/docker), ``models/`` by tag, ``wheelhouse/``, ``Dockerfile``."""
    shutil.copytree(bento_path, ctx / "bento", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.rmtree(ctx / "bento" / "env" / "docker", ignore_errors=True)
    for tag in model_tags:
        name, _, version = tag.partition(":")
        src = store / "models" / name / version
        if not src.is_dir():
            raise ImageError(f"model {tag} of the Bento is not in the store {store}")
        shutil.copytree(src, ctx / "models" / name / version)
        (ctx / "models" / name / "latest").write_text(version)
    shutil.copytree(wheels, ctx / "wheelhouse")
    (ctx / "Dockerfile").write_text(render_dockerfile(dockerfile_env(bento_path)))


def build_image(bento_tag: str, variant: str = "cpu", base: str | None = None, wheel_cache: Path | None = None) -> Image:
    """Build the image of ``bento_tag`` (a Bento of the store at ``$BENTOML_HOME``) on ``base``."""
    if variant != "cpu":
        raise ImageError(
            "the GPU image needs a CUDA 13 + cuDNN 9 base (nvidia/cuda from a registry) or their pip wheels, "
            "about 3 GB more to download; build it where a registry is reachable (`bentoml containerize`, docs/deploy.md)"
        )
    base = base or os.environ.get("BASE_IMAGE") or DEFAULT_BASE
    if not docker_has_image(base):
        pulled = subprocess.run(["docker", "pull", base], capture_output=True)
        if pulled.returncode != 0:
            raise ImageError(
                f"base image {base} is neither here nor pullable; build one with `make base-image` and set BASE_IMAGE={LOCAL_BASE}"
            )
    built = bento.resolve(bento_tag, variant)
    store = Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml")
    requirements = image_requirements(built.path)
    cache = wheel_cache or REPO / "build" / "wheelhouse"
    wanted = "\n".join(requirements) + "\n"
    if not (cache / "requirements.txt").is_file() or (cache / "requirements.txt").read_text() != wanted:
        shutil.rmtree(cache, ignore_errors=True)
        download_wheels(requirements, cache)
    version = built.tag.partition(":")[2]
    name = IMAGES[variant]
    tags = (f"{name}:{version}", f"{name}:latest")
    with tempfile.TemporaryDirectory(prefix="digits-image-") as tmp:
        ctx = Path(tmp)
        stage(built.path, built.models, store, cache, ctx)
        cmd = ["docker", "build", "--build-arg", f"BASE_IMAGE={base}", *(a for t in tags for a in ("-t", t)), str(ctx)]
        # The classic builder: BuildKit needs the buildx plugin (not in Debian's docker.io) or a frontend image.
        run(cmd, env={**os.environ, "DOCKER_BUILDKIT": "0"})
    size = int(
        subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tags[0]], capture_output=True, text=True, check=True).stdout
    )
    return Image(tags, built.tag, base, size / 1e6)


def layers(tag: str) -> list[tuple[float, str]]:
    """``(MB, instruction)`` of an image's layers, largest first."""
    out = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{json .}}", tag], capture_output=True, text=True, check=True
    ).stdout
    rows = []
    for line in out.splitlines():
        item = json.loads(line)
        size = item.get("Size", "0B")
        m = re.match(r"([\d.]+)\s*([kMG]?B)", size)
        mb = float(m.group(1)) * {"B": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}[m.group(2)] if m else 0.0
        rows.append((mb, re.sub(r"\s+", " ", item.get("CreatedBy", ""))[:160]))
    return sorted(rows, reverse=True)
