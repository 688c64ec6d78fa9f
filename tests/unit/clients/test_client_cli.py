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
from clients.base import Classification, Client, Encoding, Interpolation, Prediction, Reconstruction
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
    NotOfferedError,
    ServerError,
    UnavailableError,
)

SEVEN = np.array([0.0, 0.0, 0.01, 0.02, 0.0, 0.0, 0.0, 0.96, 0.01, 0.0], dtype=np.float32)


def png_of(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


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

    def classify(self, images: Any, model: str | None = None, members: bool = False) -> list[Prediction]:
        self._record("classify", model)
        return [Prediction(7, SEVEN, "lstm", "v1")]

    def classify_image(self, image: Any, model: str | None = None, members: bool = False) -> Prediction:
        self._record("classify_image", str(image), model, *(["members"] if members else []))
        return Prediction(7, SEVEN, model or "lstm", "v1", {"lstm": SEVEN, "gated-rnn": np.roll(SEVEN, -6)} if members else None)

    def classify_batch(self, images: Any, model: str | None = None, members: bool = False) -> Classification:
        self._record("classify_batch", np.asarray(images).shape, model)
        probs = np.stack([SEVEN, np.roll(SEVEN, -6)])[: len(images)]
        return Classification(probs, model or "lstm", "1700000000", {"lstm": probs} if members else None)

    def encode(self, images: Any, model: str | None = None) -> Encoding:
        self._record("encode", images if isinstance(images, str) else np.asarray(images).shape, model)
        n = 1 if isinstance(images, str) else len(images)
        return Encoding(model or "vae2", "3", np.full((n, 2), 0.5, np.float32), np.zeros((n, 2), np.float32))

    def reconstruct(self, images: Any, model: str | None = None) -> Reconstruction:
        self._record("reconstruct", str(images), model)
        one = np.ones(1)
        return Reconstruction(
            model or "vae2", "4", one * 3.5, one * 3.0, one * 0.5, np.zeros((1, 2), np.float32), np.zeros((1, 28, 28), np.float32)
        )

    def reconstruct_png(self, images: Any, model: str | None = None) -> bytes:
        self._record("reconstruct_png", str(images), model)
        return png_of(56, 28)

    def interpolate(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> Interpolation:
        self._record("interpolate", np.asarray(z).tolist(), steps, model)
        return Interpolation(model or "vae2", "4", np.zeros((steps, 2), np.float32), np.zeros((steps, 28, 28), np.float32))

    def interpolate_png(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        self._record("interpolate_png", np.asarray(z).tolist(), steps, model)
        return png_of(28 * steps, 28)

    def interpolate_gif(self, z: Any = None, images: Any = None, steps: int = 10, model: str | None = None) -> bytes:
        self._record("interpolate_gif", np.asarray(z).tolist(), steps, model)
        return b"GIF89a"

    def plot_clusters(self, model: str | None = None, dims: Sequence[int] = (0, 1)) -> bytes:
        self._record("plot_clusters", model, tuple(dims))
        return png_of(720, 560)

    def plot_confusion(self, model: str | None = None) -> bytes:
        self._record("plot_confusion", model)
        return png_of(480, 492)

    def generate(self, z: Any, model: str | None = None) -> np.ndarray:
        self._record("generate", np.asarray(z).tolist(), model)
        return np.full((len(z), 28, 28), 0.5, np.float32)

    def sample(self, n: int, seed: int, model: str | None = None) -> np.ndarray:
        self._record("sample", n, seed, model)
        return np.zeros((n, 28, 28), np.float32)

    def manifold(
        self, model: str | None = None, n: int = 30, scale: float = 2.0, dims: Sequence[int] = (0, 1), fixed: Any = None, axes: bool = False
    ) -> bytes:
        self._record("manifold", model, n, scale, tuple(dims), fixed, *(["axes"] if axes else []))
        return png_of(n * 28, n * 28)

    def models(self) -> list[dict[str, Any]]:
        self._record("models")
        return [
            {
                "name": "lstm",
                "store_name": "mnist-lstm",
                "version": "abc",
                "version_number": 1700000001,
                "task": "classification",
                "metrics": {"test_accuracy": 0.97123},
                "provider": "CPUExecutionProvider",
                "default": True,
            },
            {"name": "vae2", "store_name": "fashion-vae2-decoder", "version_number": 1700000000, "task": "generation"},
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
    sure = Prediction(7, SEVEN, "lstm", "v1", confidence=0.93, digit=True)
    assert (
        format_result(classification_result("digit.png", SEVEN, "lstm", "v1", verdict=sure), top=1)
        == "digit.png: 7  (7 0.960)  93% sure  [lstm v1]"
    )
    blank = Prediction(7, SEVEN, "lstm", "v1", confidence=0.2, digit=False, reason="blank", detail="the image is empty: no digit to read")
    answer = classification_result("blank.png", SEVEN, "lstm", "v1", verdict=blank)
    assert answer["digit"] is False and answer["reason"] == "blank"
    assert (
        format_result(answer, top=1)
        == "blank.png: not a digit (blank: the image is empty: no digit to read); best guess 7  (7 0.960)  [lstm v1]"
    )


def test_format_models_table_tolerates_missing_fields() -> None:
    table = format_models_table(FakeClient().models()).splitlines()
    assert table[0].split() == ["NAME", "TASK", "VERSION", "STORE", "NAME", "METRIC", "PROVIDER", "DEFAULT"]
    # VERSION is the version number on both transports (HTTP's store tag is not shown).
    assert table[1].split() == ["lstm", "classification", "1700000001", "mnist-lstm", "acc", "0.9712", "CPUExecutionProvider", "yes"]
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
        (NotOfferedError("the plots are not offered over gRPC; use HTTP"), 2),
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
        # A .npy's rows name the model and version that answered, as an image's do.
        f"{batch}[0]: 7  (7 0.960, 3 0.020, 2 0.010)  [gated-rnn 1700000000]",
        f"{batch}[1]: 1  (1 0.960, 7 0.020, 2 0.010)  [gated-rnn 1700000000]",
    ]
    assert fake.calls == [("classify_image", ("digit.png", "gated-rnn")), ("classify_batch", ((2, 28, 28), "gated-rnn"))]
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


def test_classify_npy_json_names_the_model_and_version(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    batch = tmp_path / "batch.npy"
    np.save(batch, np.zeros((2, 28, 28), np.uint8))
    assert main(["classify", str(batch), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(r["index"], r["model"], r["version"]) for r in doc] == [(0, "lstm", "1700000000"), (1, "lstm", "1700000000")]
    assert all("members" not in r for r in doc)


def test_classify_members(fake: FakeClient, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["classify", "digit.png", "--model", "ensemble", "--members"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "digit.png: 7  (7 0.960, 3 0.020, 2 0.010)  [ensemble v1]",
        "  lstm: 7  (0.960)",
        "  gated-rnn: 1  (0.960)",
    ]
    assert fake.calls == [("classify_image", ("digit.png", "ensemble", "members"))]
    assert main(["classify", "digit.png", "--model", "ensemble", "--members", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    assert {name: m["label"] for name, m in result["members"].items()} == {"lstm": 7, "gated-rnn": 1}


def test_encode_prints_each_file_and_row(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    items = tmp_path / "items.npy"
    np.save(items, np.zeros((2, 28, 28), np.uint8))
    assert main(["encode", "shirt.png", str(items), "--model", "vae4"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "shirt.png: z_mean [0.500, 0.500]  z_log_var [0.000, 0.000]  [vae4 3]",
        f"{items}[0]: z_mean [0.500, 0.500]  z_log_var [0.000, 0.000]  [vae4 3]",
        f"{items}[1]: z_mean [0.500, 0.500]  z_log_var [0.000, 0.000]  [vae4 3]",
    ]
    # A picture goes to the client as its path (the transport uploads or preprocesses it), a .npy as its array.
    assert fake.calls == [("encode", ("shirt.png", "vae4")), ("encode", ((2, 28, 28), "vae4"))]
    assert main(["encode", "shirt.png", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row == {"file": "shirt.png", "index": None, "z_mean": [0.5, 0.5], "z_log_var": [0.0, 0.0], "model": "vae2", "version": "3"}


def test_reconstruct_prints_losses_and_writes_the_png_or_array(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pair.png"
    assert main(["reconstruct", "shirt.png", "-o", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "shirt.png: loss 3.50 (reconstruction 3.00 + KL 0.50)  [vae2 4]",
        f"wrote {out} (56 x 28 PNG)",
    ]
    assert [name for name, _ in fake.calls] == ["reconstruct", "reconstruct_png"]
    array = tmp_path / "decoded.npy"
    assert main(["reconstruct", "shirt.png", "-o", str(array), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.split("wrote")[0])
    assert (doc["loss"], doc["reconstruction_loss"], doc["kl"], doc["version"]) == ([3.5], [3.0], [0.5], "4")
    assert np.load(array).shape == (1, 28, 28)


def test_interpolate_writes_png_gif_or_array(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, call in (("walk.png", "interpolate_png"), ("walk.gif", "interpolate_gif"), ("walk.npy", "interpolate")):
        fake.calls.clear()
        assert main(["interpolate", "--z", "-2", "1.5", "--to", "2", "-1.5", "--steps", "4", "-o", str(tmp_path / name)]) == 0
        assert fake.calls == [(call, ([[-2.0, 1.5], [2.0, -1.5]], 4, None))]
    assert np.load(tmp_path / "walk.npy").shape == (4, 28, 28)
    with Image.open(tmp_path / "walk.png") as img:
        assert img.size == (4 * 28, 28)
    # Two images: the path runs between their z_mean, which the client asks the server for.
    fake.calls.clear()
    assert main(["interpolate", "--images", "a.png", "b.png", "--model", "vae4", "-o", str(tmp_path / "i.png")]) == 0
    assert fake.calls[:2] == [("encode", ("a.png", "vae4")), ("encode", ("b.png", "vae4"))]
    assert fake.calls[2] == ("interpolate_png", ([[0.5, 0.5], [0.5, 0.5]], 10, "vae4"))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["interpolate", "--z", "0", "0", "-o", "x.png"], "--z needs --to"),
        (["interpolate", "--images", "a.png", "b.png", "--to", "1", "1", "-o", "x.png"], "--to goes with --z"),
        (["plot", "confusion", "--dims", "0", "1", "-o", "x.png"], "--dims is for the clusters plot"),
    ],
)
def test_bad_combinations_exit_2(fake: FakeClient, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")
    assert fake.calls == []


def test_plots_and_framed_manifold(fake: FakeClient, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot", "confusion", "--model", "ensemble", "-o", str(tmp_path / "c.png")]) == 0
    assert main(["plot", "clusters", "--model", "vae4", "--dims", "2", "3", "-o", str(tmp_path / "k.png")]) == 0
    assert main(["manifold", "--n", "2", "--axes", "-o", str(tmp_path / "m.png")]) == 0
    assert fake.calls == [
        ("plot_confusion", ("ensemble",)),
        ("plot_clusters", ("vae4", (2, 3))),
        ("manifold", (None, 2, 2.0, (0, 1), None, "axes")),
    ]
    assert capsys.readouterr().out.splitlines()[:2] == [
        f"wrote {tmp_path / 'c.png'} (480 x 492 PNG)",
        f"wrote {tmp_path / 'k.png'} (720 x 560 PNG)",
    ]
