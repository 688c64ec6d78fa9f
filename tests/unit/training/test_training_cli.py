"""The ``python -m training`` command line (training/__main__.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.__main__ import build_parser, main


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("train", "export", "build"):
        assert command in out


def test_parser_defaults():
    parser = build_parser()
    export = parser.parse_args(["export", "--model", "all"])
    assert export.layout == "bentoml" and str(export.runs) == "runs"
    build = parser.parse_args(["build", "--profile", "quick"])
    assert (build.model, build.layout, str(build.out)) == ("all", "bentoml", "runs")
    train = parser.parse_args(["train", "--model", "lstm", "--epochs", "3", "--limit", "100", "--seed", "5"])
    assert (train.epochs, train.limit, train.seed, train.profile) == (3, 100, 5, "default")
    with pytest.raises(SystemExit):
        parser.parse_args(["build", "--profile", "huge"])


def test_unknown_model_is_a_usage_error(capsys):
    assert main(["train", "--model", "gru"]) == 2
    assert "unknown model 'gru'" in capsys.readouterr().err


def test_export_without_a_run_says_so(tmp_path, capsys):
    assert main(["export", "--model", "lstm", "--runs", str(tmp_path)]) == 1
    assert "no trained run" in capsys.readouterr().err


def test_bad_data_dir_is_an_error_naming_the_folder(tmp_path, capsys):
    assert main(["train", "--model", "lstm", "--data-dir", str(tmp_path), "--out", str(tmp_path / "runs")]) == 1
    assert f"{tmp_path / 'mnist'}: dataset folder not found" in capsys.readouterr().err


def test_cli_import_and_help_stay_light():
    code = (
        "import sys; from training.__main__ import build_parser; build_parser().format_help(); "
        "heavy = [m for m in ('tensorflow', 'keras', 'bentoml', 'onnxruntime', 'tf2onnx') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_too_few_test_images_for_parity_is_refused_before_training(tmp_path, capsys, datasets_dir):
    argv = ["train", "--model", "lstm", "--data-dir", str(datasets_dir), "--test-limit", "100", "--out", str(tmp_path)]
    assert main(argv) == 1
    assert "parity check needs >= 256" in capsys.readouterr().err
