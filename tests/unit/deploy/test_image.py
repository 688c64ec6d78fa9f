"""deploy/image.py without Docker: the mirror, the requirements, the Dockerfile, the build context."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from deploy import bento, image


def test_debian_mirror_comes_from_the_environment_or_apt_sources(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEBIAN_MIRROR", "http://mirror.invalid/debian")
    assert image.debian_mirror() == "http://mirror.invalid/debian"
    monkeypatch.delenv("DEBIAN_MIRROR")
    if not any(Path("/etc/apt").glob("sources.list.d/*.sources")) and not Path("/etc/apt/sources.list").is_file():
        pytest.skip("no apt sources on this machine")
    mirror = image.debian_mirror()
    assert mirror.rstrip("/").endswith("/debian") and "security" not in mirror


def test_image_requirements_are_the_bento_pins_plus_the_fast_loop(tmp_path: Path) -> None:
    (tmp_path / "env/python").mkdir(parents=True)
    (tmp_path / "env/python/requirements.txt").write_text("# pinned\nfastapi==0.165.0\nuvloop==0.23.0\n\n")
    lines = image.image_requirements(tmp_path)
    pins = bento.lock_pins()
    assert lines[:2] == ["fastapi==0.165.0", "uvloop==0.23.0"]  # the Bento's own pin is kept, not repeated
    assert lines[2:] == [f"httptools=={pins['httptools']}"]
    assert all("==" in line for line in lines)


def test_dockerfile_gets_the_bento_envs_and_passes_hadolint(tmp_path: Path) -> None:
    text = image.render_dockerfile({"SERVING_HOST": "0.0.0.0", "SERVING_GRPC_PORT": "8500"})
    assert "# @ENV" not in text
    assert 'ENV SERVING_GRPC_PORT="8500" \\\n    SERVING_HOST="0.0.0.0"' in text
    instructions = bento.dockerfile_instructions(text)
    words = [w for w, _ in instructions]
    assert words.count("FROM") == 2  # the wheelhouse stays in the first stage
    assert ("USER", "1034:1034") in instructions
    assert ("EXPOSE", "3000 8500") in instructions
    assert any(w == "HEALTHCHECK" and "/readyz" in rest for w, rest in instructions)
    assert ("CMD", '["python", "-m", "serving", "--no-build"]') in instructions
    assert not [rest for w, rest in instructions if w == "RUN" and "pip install" in rest and "--no-index" not in rest]
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    assert bento.hadolint(path) == []


def test_stage_copies_the_bento_its_models_and_the_wheels(tmp_path: Path) -> None:
    bento_dir, store, wheels, ctx = tmp_path / "bento", tmp_path / "store", tmp_path / "wheels", tmp_path / "ctx"
    (bento_dir / "src/serving").mkdir(parents=True)
    (bento_dir / "src/serving/service.py").write_text("# service\n")
    (bento_dir / "env/docker").mkdir(parents=True)
    (bento_dir / "env/docker/Dockerfile").write_text("FROM elsewhere\n")
    (bento_dir / "bento.yaml").write_text(yaml.safe_dump({"envs": [{"name": "SERVING_HTTP_PORT", "value": "3000"}]}))
    (store / "models/mnist-lstm/v1").mkdir(parents=True)
    (store / "models/mnist-lstm/v1/model.onnx").write_bytes(b"onnx")
    (store / "models/mnist-lstm/v0").mkdir(parents=True)  # another version: not the Bento's, not copied
    wheels.mkdir()
    (wheels / "requirements.txt").write_text("numpy==2.4.6\n")
    ctx.mkdir()
    image.stage(bento_dir, ["mnist-lstm:v1"], store, wheels, ctx)
    assert (ctx / "bento/src/serving/service.py").is_file()
    assert not (ctx / "bento/env/docker").exists()  # BentoML's generated Dockerfile is not ours
    assert (ctx / "models/mnist-lstm/v1/model.onnx").read_bytes() == b"onnx"
    assert (ctx / "models/mnist-lstm/latest").read_text() == "v1"
    assert not (ctx / "models/mnist-lstm/v0").exists()
    assert (ctx / "wheelhouse/requirements.txt").is_file()
    assert 'SERVING_HTTP_PORT="3000"' in (ctx / "Dockerfile").read_text()
    with pytest.raises(image.ImageError, match="mnist-gru:v9"):
        image.stage(bento_dir, ["mnist-gru:v9"], store, wheels, tmp_path / "ctx2")


def test_layers_parses_docker_history(monkeypatch) -> None:
    lines = [
        {"Size": "280MB", "CreatedBy": "/bin/sh -c #(nop) COPY dir:abc in /opt/venv"},
        {"Size": "0B", "CreatedBy": "/bin/sh -c #(nop)  USER 1034:1034"},
        {"Size": "19.8MB", "CreatedBy": "COPY models"},
        {"Size": "712kB", "CreatedBy": "COPY bento"},
    ]

    class Done:
        stdout = "\n".join(json.dumps(x) for x in lines)

    monkeypatch.setattr(image.subprocess, "run", lambda *a, **k: Done())
    rows = image.layers("digits-cpu:latest")
    assert [round(mb, 3) for mb, _ in rows] == [280.0, 19.8, 0.712, 0.0]


def test_the_gpu_image_says_why_it_is_not_built_here() -> None:
    with pytest.raises(image.ImageError, match="CUDA 13"):
        image.build_image("digits:latest", "gpu")
