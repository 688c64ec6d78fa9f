"""The upload benchmark (training/uploads.py): reproducible images within the documented ranges, fonts apart
from training's, and (with a store from TEST_STORE) the evaluation command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from contract.images import decode_image, mnist_preprocess
from training import upload_scores, uploads
from training.__main__ import main

REPO = Path(__file__).resolve().parents[3]
N = 40
SEED = 7


@pytest.fixture(scope="module")
def fonts() -> list[uploads.BenchmarkFont]:
    """The installed benchmark fonts: missing ones fail under CI (which installs them), else skip."""
    try:
        return uploads.benchmark_fonts()
    except uploads.FontsMissing as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e} (CI must install them: {uploads.APT_COMMAND})", pytrace=False)
        pytest.skip(f"the upload benchmark's fonts are not installed; run `{uploads.APT_COMMAND}`")


@pytest.fixture(scope="module")
def made(fonts, datasets_dir, tmp_path_factory) -> tuple[Path, dict]:
    if not (datasets_dir / "mnist").is_dir():
        pytest.skip(f"no MNIST data in {datasets_dir} (set DATA_DIR)")
    out = tmp_path_factory.mktemp("uploads")
    argv = ["uploads", "make", "--out", str(out), "--n", str(N), "--seed", str(SEED), "--data-dir", str(datasets_dir)]
    assert main(argv) == 0
    return out, json.loads((out / uploads.MANIFEST).read_text())


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_writes_the_same_bytes(made, datasets_dir, tmp_path) -> None:
    out, _ = made
    (tmp_path / "99999.png").write_bytes(b"stale")  # an older, larger benchmark's file is removed
    uploads.make_uploads(tmp_path, n=N, seed=SEED, data_dir=datasets_dir)
    assert digests(tmp_path) == digests(out)
    assert len(digests(out)) == N + 1  # the images and manifest.json
    other = tmp_path / "other"
    uploads.make_uploads(other, n=N, seed=SEED + 1, data_dir=datasets_dir)
    assert digests(other)[uploads.MANIFEST] != digests(out)[uploads.MANIFEST]


def test_every_image_is_within_the_documented_ranges(made) -> None:
    out, manifest = made
    images = manifest["images"]
    assert (manifest["n"], manifest["seed"], len(images)) == (N, SEED, N)
    assert sorted({e["label"] for e in images}) == list(range(10))
    assert [e["kind"] for e in images].count(uploads.FONT) == N // 2
    assert {e["mode"] for e in images} == set(uploads.MODES)
    assert {e["polarity"] for e in images} == set(uploads.POLARITIES)
    for e in images:
        what = f"{e['file']}: {e}"
        width, height = e["canvas"]
        left, top, dw, dh = e["digit_box"]
        assert uploads.MIN_DIGIT_PX <= e["size_px"] <= uploads.MAX_DIGIT_PX, what
        assert uploads.MIN_CANVAS_PX <= min(width, height) and max(width, height) <= uploads.MAX_CANVAS_PX, what
        assert left >= uploads.MARGIN_PX and top >= uploads.MARGIN_PX, what
        assert left + dw <= width - uploads.MARGIN_PX and top + dh <= height - uploads.MARGIN_PX, what
        assert abs(e["rotation"]) <= uploads.MAX_ROTATION_DEG and e["blur"] >= 0 and e["noise"] >= 0, what
        assert e["lighting"] in uploads.LIGHTINGS, what
        if e["format"] == "JPEG":
            assert e["mode"] in ("RGB", "L") and e["file"].endswith(".jpg"), what
            assert uploads.MIN_JPEG_QUALITY <= e["jpeg_quality"] <= uploads.MAX_JPEG_QUALITY, what
        else:
            assert e["jpeg_quality"] is None and e["file"].endswith(".png"), what
        assert not e["transparent"] or e["mode"] == "RGBA", what
        if e["kind"] == uploads.FONT:
            assert e["source"] in {f["file"] for f in manifest["fonts"]} and e["package"] in uploads.BENCHMARK_PACKAGES, what
        else:
            assert e["source"].startswith("mnist:") and 0 <= int(e["source"][6:]) < manifest["mnist_test_images"], what

        img = decode_image((out / e["file"]).read_bytes(), uploads.MAX_PIXELS)
        assert (img.size, img.mode, img.format) == ((width, height), e["mode"], e["format"]), what


def test_the_serving_path_reads_nearly_every_image(made) -> None:
    out, manifest = made
    x, refused = upload_scores.preprocess(out, manifest["images"])
    assert x.shape == (N, 28, 28) and refused.sum() <= 2
    one = manifest["images"][0]
    assert (mnist_preprocess(Image.open(out / one["file"])) == x[0]).all()


def test_the_benchmark_fonts_are_its_four_packages_without_symbol_fonts(fonts) -> None:
    names = [f.name for f in fonts]
    assert len(names) == len(set(names)) and {f.package for f in fonts} <= set(uploads.BENCHMARK_PACKAGES)
    assert not [n for n in names if n.startswith(uploads.SYMBOL_FONTS)]
    # fonts-dejavu-extra shares DejaVu's folder and is not a benchmark font.
    assert not [n for n in names if n.startswith("DejaVu") and ("Oblique" in n or "Italic" in n or "Condensed" in n or "ExtraLight" in n)]
    for font in fonts:
        assert str(font.path).startswith(str(uploads.FONT_ROOT)) and uploads.font_is_usable(font.path)


def test_symbol_fonts_are_never_candidates(tmp_path) -> None:
    for relative in (
        "truetype/dejavu/DejaVuMathTeXGyre.ttf",
        "opentype/urw-base35/D050000L.otf",
        "opentype/urw-base35/StandardSymbolsPS.otf",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    (tmp_path / "opentype/urw-base35/NimbusSans-Regular.otf").write_bytes(b"not a font")
    assert [f.name for f in uploads.font_candidates(tmp_path)] == ["NimbusSans-Regular.otf"]
    assert not uploads.font_is_usable(tmp_path / "opentype/urw-base35/NimbusSans-Regular.otf")


def test_no_fonts_is_an_error_naming_the_packages(tmp_path) -> None:
    with pytest.raises(uploads.FontsMissing) as error:
        uploads.benchmark_fonts(tmp_path)
    for package in uploads.BENCHMARK_PACKAGES:
        assert package in str(error.value)
    assert uploads.APT_COMMAND in str(error.value)


def test_eval_without_a_benchmark_says_how_to_make_one(tmp_path, capsys) -> None:
    assert main(["uploads", "eval", "--uploads", str(tmp_path), "--home", str(tmp_path)]) == 1
    assert "uploads make --out" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_scores_every_stored_classifier_and_the_ensemble(made, tmp_path, trained_store) -> None:
    home = trained_store.home  # the session's tiny store (tests/conftest.py), built once for every test that needs it
    out, _ = made
    scores = tmp_path / "scores.json"
    command = [sys.executable, "-m", "training", "uploads", "eval", "--uploads", str(out), "--home", str(home), "--json", str(scores)]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True"}
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(scores.read_text())
    rows = result["models"]
    assert "ensemble" in rows and "ensemble (plain mean)" in rows and "lstm" in rows, sorted(rows)
    for name, row in rows.items():
        assert row["n"] == N and 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["ece"] <= 1.0, name
        assert sum(s["n"] for s in row["by_source"].values()) == N, name
        assert name in run.stdout
