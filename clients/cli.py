"""``digits-client`` / ``python -m clients``: classify digits and generate clothes from the command line."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    Client,
    Prediction,
    top_k,
)
from .errors import ClientError, InvalidRequestError, NotFoundError, NotOfferedError, UnavailableError

URL_ENV = "SERVING_URL"
EXIT_OK, EXIT_ERROR, EXIT_BAD_REQUEST, EXIT_UNAVAILABLE = 0, 1, 2, 3

MAIN_EPILOG = """\
examples:
  digits-client classify digit.png                 # label + top-3 probabilities
  digits-client --grpc 127.0.0.1:8500 classify digit.png --model stacked-lstm
  digits-client classify batch.npy --json          # N x 28 x 28 array, one result per row
  digits-client generate --z 1.4 -1.3 -o coat.png
  digits-client sample -n 16 --seed 1 -o grid.png
  digits-client manifold --n 20 -o manifold.png
  digits-client encode shirt.png                   # z_mean and z_log_var
  digits-client reconstruct shirt.png -o pair.png  # losses; the input beside its reconstruction
  digits-client interpolate --z -2 1.5 --to 2 -1.5 --steps 12 -o walk.gif
  digits-client plot confusion --model ensemble -o confusion.png
  digits-client models
  digits-client health && echo ready

The server is $SERVING_URL (default http://127.0.0.1:3000) unless --url or --grpc is given.
Exit status: 0 ok, 1 other failure, 2 bad request (invalid input, unknown model, or not offered
over gRPC: the plots, --members, --axes), 3 server unavailable.
"""

CLASSIFY_EPILOG = """\
examples:
  digits-client classify digit.png seven.jpg
  digits-client classify batch.npy --model gated-rnn --json
  digits-client classify digit.png --model ensemble --members   # and each member's answer (HTTP)
Image files (PNG, JPEG, any size, dark-on-light or light-on-dark) are preprocessed like
MNIST; .npy files hold N x 28 x 28 arrays (uint8 0..255 or float32 0..1).
"""

GENERATE_EPILOG = """\
examples:
  digits-client generate --z 1.4 -1.3 -o coat.png
  digits-client generate --model vae4 --z 0 0.5 -1 2 -o item.png
  digits-client generate --z 0 0 -o pixels.npy     # the float32 1 x 28 x 28 array (one image) instead of a PNG
"""

SAMPLE_EPILOG = """\
examples:
  digits-client sample -n 16 --seed 1 -o grid.png  # 4 x 4 grid
  digits-client sample -n 8 --cols 8 -o row.png
"""

MANIFOLD_EPILOG = """\
examples:
  digits-client manifold -o manifold.png           # 30 x 30 grid over [-2, 2]^2
  digits-client manifold --model vae4 --n 15 --dims 2 3 --fixed 0.5 0 0 0 -o m.png
  digits-client manifold --axes -o framed.png      # axis names and ticks, like the notebook (HTTP)
"""

ENCODE_EPILOG = """\
examples:
  digits-client encode shirt.png                   # z_mean and z_log_var of a picture of a garment
  digits-client encode items.npy --model vae4 --json
Picture files (PNG, JPEG, any size) are made Fashion-MNIST-like (light on black, fitted to 28 x 28) by
the server; .npy files hold N x 28 x 28 arrays (uint8 0..255 or float32 0..1).
"""

RECONSTRUCT_EPILOG = """\
examples:
  digits-client reconstruct shirt.png              # the training loss: reconstruction + KL
  digits-client reconstruct items.npy --model vae4 -o pairs.png   # one row per image: input | reconstruction
  digits-client reconstruct shirt.png -o decoded.npy   # the float32 N x 28 x 28 reconstructions
"""

INTERPOLATE_EPILOG = """\
examples:
  digits-client interpolate --z -2 1.5 --to 2 -1.5 --steps 12 -o walk.gif
  digits-client interpolate --images shirt.png boot.png -o strip.png   # between their z_mean
  digits-client interpolate --z 0 0 --to 1 1 -o path.npy   # the float32 steps x 28 x 28 images
"""

PLOT_EPILOG = """\
examples:
  digits-client plot confusion --model ensemble -o confusion.png
  digits-client plot clusters --model vae4 --dims 2 3 -o clusters.png
Drawn by the server from what training recorded (HTTP only).
"""

MODELS_EPILOG = """\
examples:
  digits-client models                              # VERSION is the version number, on both transports
  digits-client --grpc 127.0.0.1:8500 models --json
"""

HEALTH_EPILOG = """\
examples:
  digits-client health                              # exit status 0 when ready, 3 otherwise (unreachable or not ready)
  until digits-client health >/dev/null; do sleep 1; done
"""


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {raw}")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {raw}")
    return value


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the epilog's line breaks and shows defaults that say something (not None/False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _add_connection_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    # Added to the main parser (with defaults) and to every subcommand (suppressed defaults)
    # so the options work before or after the subcommand name.
    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection")
    group.add_argument(
        "--url",
        default=default(os.environ.get(URL_ENV) or "http://127.0.0.1:3000"),
        help=f"HTTP server base URL (env {URL_ENV})",
    )
    group.add_argument("--grpc", metavar="HOST:PORT", default=default(None), help="use the gRPC API at HOST:PORT instead of HTTP")
    group.add_argument("--timeout", type=_positive_float, default=default(DEFAULT_TIMEOUT), help="seconds per request")
    group.add_argument("--retries", type=_count, default=default(DEFAULT_RETRIES), help="retries when the server is unavailable")


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(
        prog="digits-client",
        description="Classify handwritten digits and generate Fashion-MNIST clothes with the inference service.",
        epilog=MAIN_EPILOG,
        formatter_class=_Formatter,
    )
    _add_connection_options(parser, defaults=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, epilog: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, epilog=epilog, formatter_class=_Formatter)
        _add_connection_options(p, defaults=False)
        return p

    p = command("classify", "classify image files or .npy arrays of 28 x 28 digits", CLASSIFY_EPILOG)
    p.add_argument("files", nargs="+", metavar="FILE", help="PNG/JPEG images or .npy arrays")
    p.add_argument("--model", help="a classifier the server serves (`digits-client models`); default: the server's choice")
    p.add_argument("--top", type=int, default=3, help="how many top probabilities to print")
    p.add_argument("--members", action="store_true", help="with --model ensemble: also each member's answer (HTTP only)")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = command("generate", "decode one latent point into a 28 x 28 image", GENERATE_EPILOG)
    p.add_argument("--z", nargs="+", type=float, required=True, metavar="Z", help="the latent point: latent_dim numbers")
    p.add_argument("--model", help="a generator the server serves (`digits-client models`); default: the server's choice")
    p.add_argument("-o", "--output", required=True, help="output .png (or .npy for the float array; - for stdout)")

    p = command("sample", "decode n random latent points (reproducible by seed) into a grid", SAMPLE_EPILOG)
    p.add_argument("-n", type=int, default=16, help="how many images, at most the server's row limit (256 by default)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the latent points")
    p.add_argument("--model", help="a generator the server serves (`digits-client models`); default: the server's choice")
    p.add_argument("--cols", type=int, default=None, help="grid columns (default: ceil(sqrt(n)))")
    p.add_argument("-o", "--output", required=True, help="output .png grid (or .npy for the N x 28 x 28 array; - for stdout)")

    p = command("manifold", "decode an n x n grid of the latent space into one PNG", MANIFOLD_EPILOG)
    p.add_argument("--model", help="a generator the server serves (`digits-client models`); default: the server's choice")
    p.add_argument("--n", type=int, default=30, help="grid side, at most the server's max_manifold_n (40 by default)")
    p.add_argument("--scale", type=float, default=2.0, help="latent range [-scale, scale]")
    p.add_argument("--dims", nargs=2, type=int, default=[0, 1], metavar=("X", "Y"), help="the two latent dims varied")
    p.add_argument(
        "--fixed", nargs="+", type=float, default=None, metavar="V", help="values of all latent dims (varied ones ignored); default zeros"
    )
    p.add_argument("--axes", action="store_true", help="frame it like the notebook's figure: axis names, ticks, title (HTTP only)")
    p.add_argument("-o", "--output", required=True, help="output .png (- for stdout)")

    vae = "a VAE the server serves (vae2, vae4); default: the server's choice"
    p = command("encode", "encode pictures of garments or .npy arrays into a VAE's latent space", ENCODE_EPILOG)
    p.add_argument("files", nargs="+", metavar="FILE", help="PNG/JPEG pictures or .npy arrays")
    p.add_argument("--model", help=vae)
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = command("reconstruct", "encode and decode images: the losses, and the input beside its reconstruction", RECONSTRUCT_EPILOG)
    p.add_argument("file", metavar="FILE", help="a PNG/JPEG picture or a .npy array of N x 28 x 28 images")
    p.add_argument("--model", help=vae)
    p.add_argument("-o", "--output", help="also write .png (inputs beside reconstructions) or .npy (the reconstructions); - for stdout")
    p.add_argument("--json", action="store_true", help="print the losses and z_mean as JSON")

    p = command("interpolate", "decode the straight path between two latent points (or two images' z_mean)", INTERPOLATE_EPILOG)
    ends = p.add_mutually_exclusive_group(required=True)
    ends.add_argument("--z", nargs="+", type=float, metavar="Z", help="the start point: latent_dim numbers (with --to)")
    ends.add_argument("--images", nargs=2, metavar=("A", "B"), help="two pictures or .npy images: the path runs between their z_mean")
    p.add_argument("--to", nargs="+", type=float, metavar="Z", help="the end point, with --z")
    p.add_argument("--steps", type=int, default=10, help="points on the path, both ends included (2..100)")
    p.add_argument("--model", help=vae)
    p.add_argument("-o", "--output", required=True, help="output .png strip, .gif animation or .npy (steps x 28 x 28); - for stdout")

    p = command("plot", "the notebooks' figures: a classifier's confusion matrix or a VAE's label clusters (HTTP only)", PLOT_EPILOG)
    p.add_argument("figure", choices=("confusion", "clusters"), help="which figure")
    p.add_argument("--model", help="a classifier or 'ensemble' (confusion), a VAE (clusters); default: the server's choice")
    p.add_argument("--dims", nargs=2, type=int, default=None, metavar=("X", "Y"), help="clusters: the two latent dims (default 0 1)")
    p.add_argument("-o", "--output", required=True, help="output .png (- for stdout)")

    p = command("models", "list the served models", MODELS_EPILOG)
    p.add_argument("--json", action="store_true", help="print the full model descriptions as JSON")

    p = command(
        "health", "check liveness and readiness (exit 0 when ready; 3, the status of an unavailable server, otherwise)", HEALTH_EPILOG
    )
    p.add_argument("--json", action="store_true", help='print {"live": ..., "ready": ...}')
    return parser


# -- output formatting (pure) --------------------------------------------------------------


def classification_result(
    source: str,
    probabilities: np.ndarray,
    model: str | None,
    version: str | None,
    index: int | None = None,
    members: dict[str, np.ndarray] | None = None,
    verdict: Prediction | None = None,
) -> dict[str, Any]:
    """One row of ``classify`` output as a JSON-ready dict (``members``: only when they were asked for;
    ``verdict``: the server's confidence and "not a digit" judgement, for an uploaded picture)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    result: dict[str, Any] = {
        "file": source,
        "index": index,
        "label": int(np.argmax(probs)),
        "probabilities": [float(p) for p in probs],
        "model": model,
        "version": version,
    }
    if verdict is not None and verdict.digit is not None:
        result.update(confidence=verdict.confidence, digit=verdict.digit, reason=verdict.reason, detail=verdict.detail)
    if members is not None:
        result["members"] = {
            name: {"label": int(np.argmax(row)), "probabilities": [float(p) for p in np.asarray(row, dtype=np.float64)]}
            for name, row in members.items()
        }
    return result


def format_result(result: dict[str, Any], top: int = 3) -> str:
    """``digit.png: 7  (7 0.998, 2 0.001, 3 0.000)  [lstm abc123]`` for one classification result."""
    name = result["file"] if result["index"] is None else f"{result['file']}[{result['index']}]"
    ranked = ", ".join(f"{label} {p:.3f}" for label, p in top_k(np.asarray(result["probabilities"]), top))
    line = f"{name}: {result['label']}  ({ranked})"
    if result.get("digit") is False:
        line = f"{name}: not a digit ({result['reason']}{': ' + result['detail'] if result.get('detail') else ''}); best guess {result['label']}  ({ranked})"
    elif result.get("confidence") is not None:
        line += f"  {result['confidence']:.0%} sure"
    if result.get("model"):
        line += f"  [{result['model']} {result.get('version') or ''}]".replace(" ]", "]")
    for member, answer in (result.get("members") or {}).items():
        line += f"\n  {member}: {answer['label']}  ({answer['probabilities'][answer['label']]:.3f})"
    return line


def _metric(entry: dict[str, Any]) -> str:
    metrics = entry.get("metrics") or {}
    if "test_accuracy" in metrics:
        return f"acc {metrics['test_accuracy']:.4f}"
    if "test_loss" in metrics:
        return f"loss {metrics['test_loss']:.2f}"
    return "-"


def format_models_table(models: Sequence[dict[str, Any]]) -> str:
    """A fixed-width table of ``Client.models()`` entries (missing fields shown as ``-``)."""
    header = ("NAME", "TASK", "VERSION", "STORE NAME", "METRIC", "PROVIDER", "DEFAULT")
    rows = [
        (
            str(m.get("name", "-")),
            str(m.get("task", "-")),
            str(m.get("version_number") or "-"),
            str(m.get("store_name", "-")),
            _metric(m),
            str(m.get("provider") or "-"),
            "yes" if m.get("default") else "",
        )
        for m in models
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def exit_code(exc: ClientError) -> int:
    """Exit status for a failed request: 2 bad request (or not offered on this transport), 3 unavailable, 1 anything else."""
    if isinstance(exc, (InvalidRequestError, NotFoundError, NotOfferedError)):
        return EXIT_BAD_REQUEST
    if isinstance(exc, UnavailableError):
        return EXIT_UNAVAILABLE
    return EXIT_ERROR


# -- commands ------------------------------------------------------------------------------


def _is_npy(path: str) -> bool:
    return path.lower().endswith(".npy")


def _images_arg(path: str) -> Any:
    """A file argument of the VAE commands: a .npy array, or the picture file's path (the client sends it)."""
    return _load_npy(path) if _is_npy(path) else path


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InvalidRequestError(f"cannot read {path} as a .npy array: {e}") from e


def _classify(client: Client, args: argparse.Namespace) -> int:
    results = []
    for path in args.files:
        if _is_npy(path):
            answer = client.classify_batch(_load_npy(path), model=args.model, members=args.members)
            results += [
                classification_result(
                    path,
                    row,
                    answer.model,
                    answer.version,
                    index=i,
                    members=None if answer.members is None else {name: probs[i] for name, probs in answer.members.items()},
                )
                for i, row in enumerate(answer.probabilities)
            ]
        else:
            p = client.classify_image(path, model=args.model, members=args.members)
            results.append(classification_result(path, p.probabilities, p.model, p.version, members=p.members, verdict=p))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            print(format_result(result, args.top))
    return EXIT_OK


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def describe_png(data: bytes) -> str:
    """``"W x H PNG"`` from a PNG's header (just ``"PNG"`` when the header is not there)."""
    if data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return f"{width} x {height} PNG"
    return "PNG"


def _write(output: str, data: bytes, what: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    Path(output).write_bytes(data)
    print(f"wrote {output} ({what})")


def _write_images(output: str, images: np.ndarray, ncols: int | None = None) -> None:
    if output.lower().endswith(".npy"):
        import io

        buf = io.BytesIO()
        np.save(buf, images, allow_pickle=False)
        _write(output, buf.getvalue(), f"array {' x '.join(map(str, images.shape))}")
        return
    from contract.images import tile, to_png

    png = to_png(images[0] if len(images) == 1 else tile(images, ncols=ncols))
    _write(output, png, describe_png(png))


def _generate(client: Client, args: argparse.Namespace) -> int:
    _write_images(args.output, client.generate([args.z], model=args.model))
    return EXIT_OK


def _sample(client: Client, args: argparse.Namespace) -> int:
    images = client.sample(args.n, args.seed, model=args.model)
    _write_images(args.output, images, args.cols or math.ceil(math.sqrt(len(images))))
    return EXIT_OK


def _manifold(client: Client, args: argparse.Namespace) -> int:
    png = client.manifold(model=args.model, n=args.n, scale=args.scale, dims=tuple(args.dims), fixed=args.fixed, axes=args.axes)
    _write(args.output, png, describe_png(png))
    return EXIT_OK


def _numbers(values: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


def _encode(client: Client, args: argparse.Namespace) -> int:
    results = []
    for path in args.files:
        answer = client.encode(_images_arg(path), model=args.model)
        for i, (mean, log_var) in enumerate(zip(answer.z_mean, answer.z_log_var, strict=True)):
            index = i if _is_npy(path) else None
            results.append(
                {
                    "file": path,
                    "index": index,
                    "z_mean": [float(v) for v in mean],
                    "z_log_var": [float(v) for v in log_var],
                    "model": answer.model,
                    "version": answer.version,
                }
            )
    if args.json:
        print(json.dumps(results, indent=2))
        return EXIT_OK
    for r in results:
        name = r["file"] if r["index"] is None else f"{r['file']}[{r['index']}]"
        print(f"{name}: z_mean {_numbers(r['z_mean'])}  z_log_var {_numbers(r['z_log_var'])}  [{r['model']} {r['version']}]")
    return EXIT_OK


def _reconstruct(client: Client, args: argparse.Namespace) -> int:
    images = _images_arg(args.file)
    result = client.reconstruct(images, model=args.model)
    if args.json:
        fields = ("loss", "reconstruction_loss", "kl", "z_mean")
        doc = {"file": args.file, "model": result.model, "version": result.version}
        print(json.dumps({**doc, **{f: np.asarray(getattr(result, f)).tolist() for f in fields}}, indent=2))
    elif args.output != "-":
        for i, (loss, rec, kl) in enumerate(zip(result.loss, result.reconstruction_loss, result.kl, strict=True)):
            name = f"{args.file}[{i}]" if _is_npy(args.file) else args.file
            print(f"{name}: loss {loss:.2f} (reconstruction {rec:.2f} + KL {kl:.2f})  [{result.model} {result.version}]")
    if args.output and args.output.lower().endswith(".npy"):
        _write_images(args.output, result.images)
    elif args.output:
        png = client.reconstruct_png(images, model=args.model)
        _write(args.output, png, describe_png(png))
    return EXIT_OK


def _interpolate(client: Client, args: argparse.Namespace) -> int:
    if args.z is not None and args.to is None:
        raise InvalidRequestError("--z needs --to: the start and the end point")
    if args.images is not None and args.to is not None:
        raise InvalidRequestError("--to goes with --z; --images gives both ends")
    # Two images: the path runs between their z_mean, which is what the route computes from images.
    z = [args.z, args.to] if args.z is not None else [client.encode(_images_arg(f), model=args.model).z_mean[0] for f in args.images]
    output = args.output.lower()
    if output.endswith(".npy"):
        _write_images(args.output, client.interpolate(z=z, steps=args.steps, model=args.model).images)
    elif output.endswith(".gif"):
        gif = client.interpolate_gif(z=z, steps=args.steps, model=args.model)
        _write(args.output, gif, f"GIF, {args.steps} frames")
    else:
        png = client.interpolate_png(z=z, steps=args.steps, model=args.model)
        _write(args.output, png, describe_png(png))
    return EXIT_OK


def _plot(client: Client, args: argparse.Namespace) -> int:
    if args.figure == "clusters":
        png = client.plot_clusters(model=args.model, dims=tuple(args.dims or (0, 1)))
    else:
        if args.dims is not None:
            raise InvalidRequestError("--dims is for the clusters plot")
        png = client.plot_confusion(model=args.model)
    _write(args.output, png, describe_png(png))
    return EXIT_OK


def _models(client: Client, args: argparse.Namespace) -> int:
    models = client.models()
    print(json.dumps(models, indent=2) if args.json else format_models_table(models))
    return EXIT_OK


def _health(client: Client, args: argparse.Namespace) -> int:
    state = client.health()
    if args.json:
        print(json.dumps(state))
    else:
        print(f"live: {'yes' if state['live'] else 'no'}\nready: {'yes' if state['ready'] else 'no'}")
    return EXIT_OK if state["ready"] else EXIT_UNAVAILABLE


COMMANDS = {
    "classify": _classify,
    "generate": _generate,
    "sample": _sample,
    "manifold": _manifold,
    "encode": _encode,
    "reconstruct": _reconstruct,
    "interpolate": _interpolate,
    "plot": _plot,
    "models": _models,
    "health": _health,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.grpc:
        # The gRPC client loads TensorFlow's protos; keep its C++ start-up chatter off the terminal.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from . import connect

    try:
        with connect(url=args.url, grpc=args.grpc, timeout=args.timeout, retries=args.retries) as client:
            return COMMANDS[args.command](client, args)
    except ClientError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return exit_code(e)
    except OSError as e:  # writing the output file
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
