"""Command line: ``python -m training {train,export,build,uploads} ...``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from training.catalog import ALL_MODELS, resolve_models
from training.profiles import PROFILES

DEFAULT_RUNS = Path("runs")


def _add_model(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--model",
        required=required,
        default=None if required else "all",
        metavar="NAME|all",
        help=f"one of {', '.join(ALL_MODELS)}, a comma-separated list, or 'all'",
    )


def _add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        help="folder with mnist/ and fashion-mnist/ IDX files (default: $DATA_DIR, else keras.datasets)",
    )


def _add_layout(parser: argparse.ArgumentParser, repositories: bool = False) -> None:
    # training.export imports TensorFlow only inside the functions that need it.
    from training.export import LAYOUTS
    from training.repository import REPOSITORY_LAYOUTS

    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS) + (list(REPOSITORY_LAYOUTS) if repositories else []),
        default="bentoml",
        help="where exports go: 'bentoml' registers them in the store at $BENTOML_HOME (default)"
        + (
            "; 'triton' / 'tfserving' write the models already in that store as a Triton model repository / "
            "TensorFlow Serving base paths under --out (--model all: every stored model)"
            if repositories
            else ""
        ),
    )
    if repositories:
        parser.add_argument("--out", type=Path, help="output folder of --layout triton|tfserving")


def _add_verbosity(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m training``."""
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train, export and register the MNIST RNN classifiers and the Fashion-MNIST VAEs.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train models; one run directory per model under --out")
    _add_model(train)
    train.add_argument(
        "--profile", choices=sorted(PROFILES), default="default", help="defaults for epochs, data limits and batch size (default: default)"
    )
    train.add_argument("--epochs", type=int, help="epochs for every selected model (default: the profile's)")
    _add_data(train)
    train.add_argument("--out", type=Path, default=DEFAULT_RUNS, help="runs folder (default: runs/)")
    train.add_argument("--limit", type=int, help="use only the first N shuffled training images")
    train.add_argument("--test-limit", type=int, help="use only the first N test images (>= 256 for export)")
    train.add_argument("--seed", type=int, help="random seed for shuffling and initialisation")
    train.add_argument("--batch-size", type=int, help="training batch size")
    _add_verbosity(train)

    export = commands.add_parser("export", help="SavedModel + ONNX + parity check + signature.json, then publish")
    _add_model(export)
    export.add_argument("--runs", type=Path, default=DEFAULT_RUNS, help="runs folder written by train (default: runs/)")
    _add_layout(export, repositories=True)

    build = commands.add_parser("build", help="train + export + register every model of a profile")
    build.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        required=True,
        help="default = quality (make models); quick = minutes (make serve); test = tiny (tests)",
    )
    _add_model(build, required=False)
    _add_data(build)
    build.add_argument("--out", type=Path, default=DEFAULT_RUNS, help="runs folder (default: runs/)")
    _add_layout(build)
    _add_verbosity(build)

    uploads = commands.add_parser(
        "uploads", help="the upload benchmark: generated digit pictures, and every stored classifier's score on them"
    )
    steps = uploads.add_subparsers(dest="step", required=True, metavar="STEP")
    make = steps.add_parser("make", help="write N seeded uploads (PNG/JPEG) and manifest.json into --out")
    make.add_argument("--out", type=Path, required=True, help="output folder (its old NNNNN.png|jpg are replaced)")
    make.add_argument("--n", type=int, default=2000, help="number of images, half typeset, half MNIST test digits (default: 2000)")
    make.add_argument("--seed", type=int, default=2025, help="random seed: the same seed writes the same bytes (default: 2025)")
    _add_data(make)
    evaluate = steps.add_parser("eval", help="score every stored classifier and the ensemble on an upload benchmark")
    evaluate.add_argument("--uploads", type=Path, required=True, help="folder written by `uploads make`")
    evaluate.add_argument("--home", type=Path, help="BentoML store (default: $BENTOML_HOME, else ~/bentoml)")
    evaluate.add_argument("--json", type=Path, help="also write the scores as JSON here")
    return parser


def _uploads(args: argparse.Namespace) -> int:
    from training import upload_scores, uploads

    if args.step == "make":
        manifest = uploads.make_uploads(args.out, n=args.n, seed=args.seed, data_dir=args.data_dir)
        fonts = len(manifest["fonts"])
        print(
            f"[uploads] {manifest['n']} images (seed {manifest['seed']}, {fonts} fonts) in {manifest['seconds']:.1f}s "
            f"-> {args.out}/{uploads.MANIFEST}",
            flush=True,
        )
        return 0
    result = upload_scores.evaluate_uploads(args.uploads, args.home)
    print(upload_scores.format_table(result), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[uploads] scores in {args.json}", flush=True)
    return 0


def _train(args: argparse.Namespace, names: list[str], profile_name: str) -> dict[str, dict]:
    from training import data
    from training.train import TrainOptions, train

    data_dir = data.resolve_data_dir(args.data_dir)
    records = {}
    for name in names:
        options = TrainOptions.from_profile(
            PROFILES[profile_name],
            name,
            epochs=getattr(args, "epochs", None),
            seed=getattr(args, "seed", None),
            limit=getattr(args, "limit", None),
            test_limit=getattr(args, "test_limit", None),
            batch_size=getattr(args, "batch_size", None),
            data_dir=str(data_dir) if data_dir else None,
            verbose=2 if args.quiet else 1,
        )
        records[name] = train(name, options, args.out)
    return records


def _export(names: list[str], runs: Path, layout: str) -> dict[str, dict]:
    from training.export import export

    results = {}
    for name in names:
        started = time.perf_counter()
        published = export(name, runs, layout)
        results[name] = {"seconds": round(time.perf_counter() - started, 1), "entries": published}
    return results


def _export_repository(layout: str, out: Path | None, names: list[str], every: bool) -> None:
    from training.catalog import store_entries
    from training.repository import RepositoryError, export_repository

    if out is None:
        raise RepositoryError(f"--layout {layout} needs --out DIR")
    store_names = None if every else [e.store_name for name in names for e in store_entries(name)]
    for entry in export_repository(layout, out, store_names):
        print(f"[export] {entry['tag']} -> {layout}: {entry['path']}", flush=True)


def _summary(runs: Path, profile: str, exports: dict[str, dict], total: float) -> dict:
    models = {}
    for name, exported in exports.items():
        run = json.loads((runs / name / "run.json").read_text())
        models[name] = {
            "metrics": json.loads((runs / name / "metrics.json").read_text()),
            "epochs": run["epochs"],
            "train_size": run["train_size"],
            "train_seconds": run["train_seconds"],
            "export_seconds": exported["seconds"],
            "exports": exported["entries"],
        }
    return {"profile": profile, "total_seconds": round(total, 1), "models": models}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    args = build_parser().parse_args(argv)
    if args.command == "uploads":
        from contract.errors import ServingError
        from training.data import DataError

        try:
            return _uploads(args)
        except (DataError, FileNotFoundError, ValueError, ServingError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    try:
        names = resolve_models(args.model)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    from training.data import DataError
    from training.export import ExportError
    from training.repository import REPOSITORY_LAYOUTS

    started = time.perf_counter()
    try:
        if args.command == "train":
            _train(args, names, args.profile)
        elif args.command == "export" and args.layout in REPOSITORY_LAYOUTS:
            _export_repository(args.layout, args.out, names, every=args.model == "all")
        elif args.command == "export":
            _export(names, args.runs, args.layout)
        else:
            exports = {}
            for name in names:  # export each model right away: a bad export fails fast
                _train(args, [name], args.profile)
                exports.update(_export([name], args.out, args.layout))
            summary = _summary(args.out, args.profile, exports, time.perf_counter() - started)
            (args.out / "build.json").write_text(json.dumps(summary, indent=2) + "\n")
            print(
                f"[build] profile {args.profile}: {len(names)} models in {summary['total_seconds']:.0f}s; "
                f"summary in {args.out / 'build.json'}",
                flush=True,
            )
    except (DataError, ExportError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
