"""``python -m deploy``: build the Bento, containerize it, check it, render and validate the Kubernetes manifests.

    python -m deploy bento [--gpu] [--models TAG,...]      bentoml build (no Docker needed)
    python -m deploy base-image [--tag T] [--rebuild]      a python:3.11-slim equivalent from Debian's packages (debootstrap)
    python -m deploy container [--bento TAG] [--base IMG]  the image digits-cpu:<bento version> + :latest (needs a Docker engine)
    python -m deploy check [--gpu] [--bento TAG]           inspect a built Bento + hadolint its Dockerfile
    python -m deploy k8s [VARIANT ...|--all] [--validate]  render deploy/k8s (kubectl kustomize) / validate it

The CPU variant (bentofile.yaml with deploy.bento.CPU_VARIANT) is the default; ``--gpu`` builds bentofile.yaml as it is
(CUDA 13 + cuDNN 9). Models come from the store at ``$BENTOML_HOME``. Kubernetes variants:
cpu, gpu (``--gpu``), keda, gpu-keda, kserve, kserve-gpu (deploy/manifests.py). See docs/deploy.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence


def _variant(args: argparse.Namespace) -> str:
    return "gpu" if args.gpu else "cpu"


def cmd_bento(args: argparse.Namespace) -> int:
    from deploy import bento

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        built = bento.build(_variant(args), models=models, version=args.version)
    except Exception as e:  # BentoML raises a zoo of types (NotFound, InvalidArgument, BentoMLException)
        print(f"error: bentoml build failed: {type(e).__name__}: {e}", file=sys.stderr)
        if "not found" in str(e).lower():
            print(
                "hint: the bentofile names models missing from the store at $BENTOML_HOME; run `make models` "
                "or pass --models with the tags you have (`bentoml models list`)",
                file=sys.stderr,
            )
        return 1
    if args.json:
        print(json.dumps(built.to_json()))
    else:
        print(f"built {built.tag} ({built.variant}) at {built.path}")
        print(f"models: {', '.join(built.models)}")
        print(
            f"next: python -m deploy check --bento {built.tag}"
            f"{' --gpu' if built.variant == 'gpu' else ''}; python -m deploy container --bento {built.tag}"
            f"{' --gpu' if built.variant == 'gpu' else ''}"
        )
    return 0


def cmd_base_image(args: argparse.Namespace) -> int:
    from deploy import image

    try:
        tag = image.build_base(args.tag, rebuild=args.rebuild)
    except (image.ImageError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"base image {tag}; build on it with BASE_IMAGE={tag} make container")
    return 0


def cmd_container(args: argparse.Namespace) -> int:
    from deploy import bento, image

    variant = _variant(args)
    why = bento.docker_engine()
    if why:
        print(f"error: no container engine here ({why}). Start dockerd (docs/deploy.md).", file=sys.stderr)
        return 3
    try:
        built = image.build_image(args.bento or bento.latest_tag(variant), variant, base=args.base)
    except (image.ImageError, subprocess.CalledProcessError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(built.to_json()))
        return 0
    print(f"image {', '.join(built.tags)}: {built.size_mb:,.0f} MB on {built.base} (Bento {built.bento})")
    for mb, step in image.layers(built.tags[0])[:5]:
        print(f"  {mb:8.1f} MB  {step}")
    print(f"run: docker run --rm --stop-timeout 30 -p 3000:3000 -p 8500:8500 {built.tags[-1]}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from deploy import bento

    try:
        built = bento.resolve(args.bento or bento.latest_tag(_variant(args)), _variant(args))
    except Exception as e:  # bentoml's NotFound and friends
        print(f"error: no such Bento: {e} (build one with `python -m deploy bento`)", file=sys.stderr)
        return 1
    checks = bento.check_bento(built, lint=not args.no_lint)
    if args.json:
        print(json.dumps({"bento": built.to_json(), "checks": [c.__dict__ for c in checks]}, indent=2))
    else:
        print(f"{built.tag} ({built.variant}) at {built.path}")
        for c in checks:
            print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}")
    return 0 if all(c.ok for c in checks) else 1


def cmd_k8s(args: argparse.Namespace) -> int:
    from deploy import manifests

    variants = list(manifests.KUSTOMIZATIONS) if args.all else args.variants or [_variant(args)]
    unknown = [v for v in variants if v not in manifests.KUSTOMIZATIONS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; choose from {list(manifests.KUSTOMIZATIONS)}", file=sys.stderr)
        return 2
    if args.gpu and args.variants:
        print("error: --gpu names the gpu variant; pass either --gpu or variant names", file=sys.stderr)
        return 2
    if not args.validate and len(variants) != 1:
        print("error: the variants are alternatives; print one at a time (or --validate them all)", file=sys.stderr)
        return 2
    try:
        rendered = {v: manifests.render(manifests.KUSTOMIZATIONS[v]) for v in variants}
    except manifests.ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if not args.validate:
        sys.stdout.write(manifests.to_yaml(rendered[variants[0]]))
        return 0
    failed = False
    for variant, objects in rendered.items():
        errors = manifests.validate(objects)
        for error in errors:
            print(f"FAIL {variant}: {error}")
        if not errors:
            kinds = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objects)
            print(f"ok {variant}: {kinds}")
        failed = failed or bool(errors)
    if not failed:
        print(
            f"(Kubernetes kinds checked for {', '.join(manifests.KUBERNETES_VERSIONS)}; KServe and KEDA "
            "against their vendored CRD schemas, deploy/schemas)"
        )
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deploy",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--gpu", action="store_true", help="the CUDA variant (bentofile.yaml) instead of the CPU one")
        return sub

    b = add("bento", "bentoml build the service + models into the local Bento store ($BENTOML_HOME)")
    b.add_argument("--models", help="comma-separated store tags/names to package instead of the bentofile's list")
    b.add_argument("--version", help="Bento version (default: generated)")
    b.add_argument("--json", action="store_true", help="print {tag, path, variant, models} as JSON")
    b.set_defaults(run=cmd_bento)

    base = add("base-image", "build a python:3.11-slim equivalent from Debian's packages (debootstrap + docker import; root)")
    base.add_argument("--tag", default="digits-base:bookworm", help="image tag (default: digits-base:bookworm)")
    base.add_argument("--rebuild", action="store_true", help="build again even when the tag exists")
    base.set_defaults(run=cmd_base_image)

    c = add("container", "build the serving image from a Bento: our Dockerfile, wheels from the pins, no index or registry in the build")
    c.add_argument("--bento", help="Bento tag (default: the newest of the variant)")
    c.add_argument("--base", help="base image (default: $BASE_IMAGE, else python:3.11-slim)")
    c.add_argument("--json", action="store_true", help="print {tags, bento, base, size_mb} as JSON")
    c.set_defaults(run=cmd_container)

    k = add("check", "check a built Bento: service, models, sources, pins, Dockerfile; hadolint")
    k.add_argument("--bento", help="Bento tag (default: the newest of the variant)")
    k.add_argument("--no-lint", action="store_true", help="skip hadolint")
    k.add_argument("--json", action="store_true", help="machine-readable report")
    k.set_defaults(run=cmd_check)

    m = add("k8s", "print the rendered Kubernetes manifests (deploy/k8s, kubectl kustomize), or validate them")
    m.add_argument("variants", nargs="*", metavar="VARIANT", help="cpu (default), gpu, keda, gpu-keda, kserve, kserve-gpu")
    m.add_argument("--all", action="store_true", help="every variant")
    m.add_argument(
        "--validate", action="store_true", help="validate instead of printing (Kubernetes API schemas, CRD schemas); exit 1 on errors"
    )
    m.set_defaults(run=cmd_k8s)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
