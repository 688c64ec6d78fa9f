"""CLI parsing, output formatting and exit codes, with a fake client (no server)."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

import clients
from clients.base import Client, Prediction
from clients.cli import (
    build_parser,
    classification_result,
    describe_png,
    exit_code,
    format_models_table,
    format_result,
    main,
)
from clients.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnavailableError,
)

SEVEN = np.array([0.0, 0.0, 0.01, 0.02, 0.0, 0.0, 0.0, 0.96, 0.01, 0.0], dtype=np.float32)


class FakeClient(Client):
    """Answers from fixed data and records how it was called and built."""

    def __init__(self, error: Exception | None = None, ready: bool = True) -> None:
        self.error, self.ready = error, ready
        self.calls: list[tuple[str, Any]] = []
        self.closed = False

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True

    def classify(self, images: Any, model: str | None = None) -> list[Prediction]:
        self._record("classify", model)
        return [Prediction(7, SEVEN, "lstm", "v1")]

    def classify_image(self, image: Any, model: str | None = None) -> Prediction:
        self._record("classify_image", str(image), model)
        return Prediction(7, SEVEN, model or "lstm", "v1")

    def classify_bulk(self, images: Any, model: str | None = None) -> np.ndarray:
        self._record("classify_bulk", np.asarray(images).shape, model)
        return np.stack([SEVEN, np.roll(SEVEN, -6)])[: len(images)]

    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        self._record("generate", np.asarray(z).tolist(), model)
        return np.full((len(z), 28, 28), 0.5, np.float32)

    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        self._record("sample", n, seed, model)
        return np.zeros((n, 28, 28), np.float32)

    def manifold(self, model: str | None = None, n: int = 30, scale: float = 2.0, dims: Sequence[int] = (0, 1), fixed: Any = None) -> bytes:
        self._record("manifold", model, n, scale, tuple(dims), fixed)
        buf = io.BytesIO()
        Image.new("L", (n * 28, n * 28)).save(buf, format="PNG")
        return buf.getvalue()

    def models(self) -> list[dict[str, Any]]:
        self._record("models")
        return [
            {
                "name": "lstm",
                "store_name": "mnist-lstm",
                "version": "abc",
                "task": "classification",
                "metrics": {"test_accuracy": 0.97123},
                "provider": "CPUExecutionProvider",
                "default": True,
            },
            {"name": "vae2", "store_name": "fashion-vae2-decoder", "version": "1700000000", "task": "generation"},
        ]

    def health(self) -> dict[str, bool]:
        self._record("health")
        return {"live": True, "ready": self.ready}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    client = FakeClient()
    built: list[dict[str, Any]] = []

    def connect(**kwargs: Any) -> FakeClient:
        built.append(kwargs)
        return client

    monkeypatch.setattr(clients, "connect", connect)
    client.built = built
    return client


def test_global_options_work_before_and_after_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SERVING_URL", raising=False)
    args = build_parser().parse_args(["classify", "a.png"])
    assert (args.url, args.grpc, args.timeout, args.retries) == ("http://127.0.0.1:3000", None, 10.0, 3)
    args = build_parser().parse_args(["--grpc", "h:1", "--timeout", "2", "models"])
    assert (args.grpc, args.timeout) == ("h:1", 2.0)
    args = build_parser().parse_args(["models", "--url", "http://x:1", "--retries", "0"])
    assert (args.url, args.retries, args.grpc) == ("http://x:1", 0, None)


def test_url_defaults_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVING_URL", "http://env:9")
    assert build_parser().parse_args(["health"]).url == "http://env:9"


def test_negative_latent_values_parse_as_numbers() -> None:
    args = build_parser().parse_args(["generate", "--z", "1.4", "-1.3", "-o", "out.png"])
    assert args.z == [1.4, -1.3] and args.output == "out.png" and args.model is None  # the server picks its default generator


def test_manifold_and_sample_options() -> None:
    args = build_parser().parse_args(
        ["manifold", "--model", "vae4", "--n", "5", "--dims", "2", "3", "--fixed", "1", "0", "-0.5", "0", "-o", "m.png"]
    )
    assert (args.model, args.n, args.scale, args.dims, args.fixed) == ("vae4", 5, 2.0, [2, 3], [1.0, 0.0, -0.5, 0.0])
    args = build_parser().parse_args(["sample", "-n", "4", "--seed", "9", "-o", "g.png"])
    assert (args.n, args.seed, args.cols) == (4, 9, None)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["generate", "--z", "1", "2"],  # -o is required
        ["classify"],
        ["--timeout", "0", "health"],
        ["--retries", "-1", "health"],
        ["manifold", "--dims", "0", "-o", "m.png"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_format_result() -> None:
    result = classification_result("digit.png", SEVEN, "lstm", "v1")
    assert result["label"] == 7 and result["index"] is None
    assert format_result(result) == "digit.png: 7  (7 0.960, 3 0.020, 2 0.010)  [lstm v1]"
    row = classification_result("batch.npy", SEVEN, None, None, index=4)
    assert format_result(row, top=1) == "batch.npy[4]: 7  (7 0.960)"


def test_format_models_table_tolerates_missing_fields() -> None:
    table = format_models_table(FakeClient().models()).splitlines()
    assert table[0].split() == ["NAME", "TASK", "VERSION", "STORE", "NAME", "METRIC", "PROVIDER", "DEFAULT"]
    assert table[1].split() == ["lstm", "classification", "abc", "mnist-lstm", "acc", "0.9712", "CPUExecutionProvider", "yes"]
    assert table[2].split() == ["vae2", "generation", "1700000000", "fashion-vae2-decoder", "-", "-"]
    # Columns line up: every row starts its TASK column at the same offset.
    assert len({line.index(word) for line, word in zip(table, ["TASK", "classification", "generation"], strict=True)}) == 1


@pytest.mark.parametrize(
    "error, code",
    [
        (InvalidRequestError("bad"), 2),
        (NotFoundError("no model"), 2),
        (UnavailableError("down"), 3),
        (DeadlineExceededError("slow"), 3),
        (ServerError("boom"), 1),
    ],
)
def test_exit_codes(error: Exception, code: int) -> None:
    assert exit_code(error) == code


def test_classify_prints_one_line_per_image_and_row(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, np.zeros((2, 28, 28), np.uint8))
    assert main(["--grpc", "h:1", "classify", "digit.png", str(batch), "--model", "gated-rnn"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "digit.png: 7  (7 0.960, 3 0.020, 2 0.010)  [gated-rnn v1]",
        f"{batch}[0]: 7  (7 0.960, 3 0.020, 2 0.010)  [gated-rnn]",
        f"{batch}[1]: 1  (1 0.960, 7 0.020, 2 0.010)  [gated-rnn]",
    ]
    assert fake.calls == [("classify_image", ("digit.png", "gated-rnn")), ("classify_bulk", ((2, 28, 28), "gated-rnn"))]
    assert [(b["grpc"], b["timeout"], b["retries"]) for b in fake.built] == [("h:1", 10.0, 3)]
    assert fake.closed


def test_classify_json(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "a.png", "b.png", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in doc] == ["a.png", "b.png"]
    assert doc[0]["label"] == 7 and doc[0]["model"] == "lstm" and len(doc[0]["probabilities"]) == 10


def test_classify_unreadable_npy_is_a_bad_request(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npy"
    bad.write_bytes(b"not numpy")
    assert main(["classify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and str(bad) in err


@pytest.mark.parametrize(
    "error, code",
    [
        (InvalidRequestError("images must have shape N x 28 x 28"), 2),
        (UnavailableError("cannot reach"), 3),
        (ServerError("internal error"), 1),
    ],
)
def test_client_errors_print_message_and_exit_code(
    fake: FakeClient, error: Exception, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.error = error
    assert main(["classify", "x.png"]) == code
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_generate_writes_a_png(fake: FakeClient, tmp_path) -> None:
    out = tmp_path / "coat.png"
    assert main(["generate", "--z", "1.4", "-1.3", "-o", str(out)]) == 0
    assert fake.calls == [("generate", ([[1.4, -1.3]], None))]
    with Image.open(out) as img:
        assert img.size == (28, 28) and img.getpixel((0, 0)) == 128


def test_generate_npy_output(fake: FakeClient, tmp_path) -> None:
    out = tmp_path / "pixels.npy"
    assert main(["generate", "--z", "0", "0", "-o", str(out)]) == 0
    assert np.load(out).shape == (1, 28, 28)


def test_sample_grid_size(fake: FakeClient, tmp_path) -> None:
    out = tmp_path / "grid.png"
    assert main(["sample", "-n", "6", "--seed", "3", "-o", str(out)]) == 0
    assert fake.calls == [("sample", (6, 3, None))]
    with Image.open(out) as img:
        assert img.size == (3 * 28, 2 * 28)
    assert main(["sample", "-n", "6", "--cols", "6", "-o", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size == (6 * 28, 28)


def test_manifold_passes_options_and_writes_the_bytes(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.png"
    assert main(["manifold", "--n", "3", "--scale", "1.5", "--dims", "1", "0", "-o", str(out)]) == 0
    assert fake.calls == [("manifold", (None, 3, 1.5, (1, 0), None))]
    assert capsys.readouterr().out == f"wrote {out} (84 x 84 PNG)\n"
    with Image.open(out) as img:
        assert img.size == (84, 84)


def test_png_output_to_stdout(fake: FakeClient, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["sample", "-n", "2", "-o", "-"]) == 0
    data = capsysbinary.readouterr().out
    assert describe_png(data) == "56 x 28 PNG"
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (56, 28)
    assert describe_png(b"GIF89a") == "PNG"


def test_unwritable_output_exits_1(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manifold", "-o", str(tmp_path / "missing-dir" / "m.png")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_models_table_and_json(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("lstm ")
    assert main(["models", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["lstm", "vae2"]


def test_health_exit_status(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["health"]) == 0
    assert capsys.readouterr().out == "live: yes\nready: yes\n"
    fake.ready = False
    assert main(["health", "--json"]) == 3  # unavailable, as every command answers it
    assert json.loads(capsys.readouterr().out) == {"live": True, "ready": False}
