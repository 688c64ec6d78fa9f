"""One frozen settings object, read from ``SERVING_*`` environment variables once at start-up.

``python -m serving.settings`` prints the configuration table (Markdown) for the README;
``python -m serving.settings --current`` prints the values the current environment yields.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PREFIX = "SERVING_"
MiB = 1 << 20
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _parse_str(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    return value


def _parse_optional_str(raw: str) -> str | None:
    return raw.strip() or None


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _int(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip().replace("_", ""))
        except ValueError:
            raise ValueError(f"must be an integer, got {raw!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f">= {minimum}" if maximum is None else f"within {minimum}..{maximum}"
            raise ValueError(f"must be {bounds}, got {value}")
        return value

    return parse


_SIZE = re.compile(r"^\s*(\d[\d_]*)\s*([kmg]?)(i?b?)\s*$", re.IGNORECASE)


def _parse_bytes(raw: str) -> int:
    # "16777216", "16MiB", "16M" and "16MB" all mean 16 * 2**20: limits are about memory, not disk marketing.
    match = _SIZE.match(raw)
    if not match:
        raise ValueError(f"must be a byte count like 16777216 or 16MiB, got {raw!r}")
    number, unit = int(match.group(1).replace("_", "")), match.group(2).lower()
    value = number * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
    if value < 1:
        raise ValueError(f"must be at least 1 byte, got {raw!r}")
    return value


def _float(minimum: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
        if not value >= minimum or value == float("inf"):
            raise ValueError(f"must be a finite number >= {minimum}, got {raw!r}")
        return value

    return parse


def _parse_providers(raw: str) -> str:
    # Which providers exist is only known to onnxruntime (serving/runtime.py checks that);
    # here we only reject what can never be valid.
    tokens = _parse_list(raw)
    if not tokens:
        raise ValueError("must be 'auto' or a comma list such as 'cuda,cpu'")
    if any(t.lower() == "auto" for t in tokens) and len(tokens) > 1:
        raise ValueError(f"'auto' cannot be combined with other providers, got {raw!r}")
    return ",".join(tokens)


GRPC_COMPRESSIONS = ("none", "gzip", "deflate")


def _parse_grpc_compression(raw: str) -> str:
    value = raw.strip().lower()
    if value not in GRPC_COMPRESSIONS:
        raise ValueError(f"must be one of {', '.join(GRPC_COMPRESSIONS)}, got {raw!r}")
    return value


def _parse_log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {raw!r}")
    return value


def _parse_trace_level(raw: str) -> str:
    levels = [v.strip().upper() for v in raw.split(",") if v.strip()] or ["OFF"]
    if any(v not in ("OFF", "TIMESTAMPS", "TENSORS") for v in levels) or ("OFF" in levels and len(set(levels)) > 1):
        raise ValueError(f"must be OFF, or TIMESTAMPS and/or TENSORS (comma-separated), got {raw!r}")
    return ",".join(dict.fromkeys(levels))


def _parse_trace_url(raw: str) -> str:
    value = raw.strip()
    if value and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        raise ValueError(f"must be an http(s) URL of an OTLP/HTTP collector, such as http://127.0.0.1:4318/v1/traces; got {raw!r}")
    return value


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _parse_version_policy(raw: str) -> str:
    from .core.versions import parse_policies

    parse_policies(raw)
    return raw.strip() or "latest"


def _parse_version_labels(raw: str) -> str:
    from .core.versions import parse_labels

    parse_labels(raw)
    return raw.strip()


def _parse_restricted(raw: str) -> str:
    from .transport.restricted import Restricted

    Restricted.parse(raw)
    return raw.strip()


def _setting(default: Any, parse: Callable[[str], Any], help: str) -> Any:
    return field(default=default, metadata={"parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Server configuration; build it with :meth:`Settings.from_env` at start-up and pass it down."""

    host: str = _setting("127.0.0.1", _parse_str, "interface both servers bind to (0.0.0.0 for all)")
    http_port: int = _setting(3000, _int(0, 65535), "HTTP (BentoML) port")
    grpc_port: int = _setting(
        8500,
        _int(0, 65535),
        "gRPC port (TF-Serving PredictionService, health, reflection), shared by the workers (SO_REUSEPORT); 0 = no gRPC",
    )
    models: tuple[str, ...] = _setting(
        (),
        _parse_list,
        "comma-separated store names or tags to serve, a fixed set (no policies, no reload); empty = what SERVING_VERSION_POLICY selects from the store",
    )
    version_policy: str = _setting(
        "latest",
        _parse_version_policy,
        "versions served per model: latest, 'latest N', 'specific V1,V2' or all; one for every model, or 'model=policy' entries separated by ';' (see serving/core/versions.py)",
    )
    version_labels: str = _setting(
        "",
        _parse_version_labels,
        "labels naming versions, e.g. 'mnist-lstm:stable=1795541821,canary=1795600000'; unversioned requests go to 'stable' when set",
    )
    model_poll_s: float = _setting(
        30.0, _float(0.0), "seconds between looks at the model store for new versions to load; 0 = load once at start-up"
    )
    retire_grace_s: float = _setting(
        5.0,
        _float(0.0),
        "seconds an unselected version keeps serving requests that already chose it, before its queue is finished and it is unloaded",
    )
    model_control: bool = _setting(
        False, _parse_bool, "enable the model control API (POST /v2/repository/..., label changes): it changes what is served"
    )
    tls_cert: str | None = _setting(
        None, _parse_optional_str, "PEM certificate (chain) file: HTTPS on the HTTP port and TLS on the gRPC port; empty = plain text"
    )
    tls_key: str | None = _setting(None, _parse_optional_str, "PEM private key file of SERVING_TLS_CERT")
    tls_client_ca: str | None = _setting(
        None,
        _parse_optional_str,
        "PEM CA bundle: with it, clients must present a certificate it signed (mutual TLS, HTTP and gRPC); empty = no client certificates",
    )
    restricted_api: str = _setting(
        "",
        _parse_restricted,
        "admin API groups that need a key, as 'GROUPS:KEY=VALUE' entries separated by ';' (groups: model-repository, shared-memory, statistics, trace, logging), "
        "e.g. 'model-repository,shared-memory:admin-key=secret'; the key is an HTTP header or gRPC metadata; empty = none restricted",
    )
    state_dir: str | None = _setting(
        None,
        _parse_optional_str,
        "directory the workers share for control and per-worker state; empty = a temp dir named after the server process",
    )
    default_classifier: str | None = _setting(
        None, _parse_optional_str, "classifier used when a request names none; empty = best stored test_accuracy"
    )
    providers: str = _setting(
        "auto", _parse_providers, "ONNX Runtime providers in order, e.g. 'cuda,cpu' or full ORT names; 'auto' = CUDA if usable, then CPU"
    )
    intra_op_threads: int = _setting(0, _int(0), "ONNX Runtime intra-op threads per session; 0 = ORT default")
    ort_spinning: bool = _setting(
        False, _parse_bool, "let ONNX Runtime threads spin-wait between runs (only with cores to spare: spinning starves the event loop)"
    )
    max_batch_size: int = _setting(64, _int(1), "most rows the batcher merges into one model call")
    queue_delay_ms: float = _setting(
        0.0,
        _float(0.0),
        "how long a batch waits for more requests once the model is free; 0 = never wait (an idle model runs a lone request at once)",
    )
    max_queue: int = _setting(
        128,
        _int(1),
        "requests waiting per model and worker; past it a request is refused at once (HTTP 503 + Retry-After, gRPC UNAVAILABLE)",
    )
    max_in_flight: int = _setting(
        256,
        _int(0),
        "HTTP requests one worker holds at once (health and metrics aside); past it a request is refused with 503 before its body is read (0 = no bound)",
    )
    max_body_bytes: int = _setting(16 * MiB, _parse_bytes, "largest HTTP request body (accepts 16MiB style suffixes)")
    max_image_pixels: int = _setting(16_000_000, _int(1), "largest uploaded image, width x height (decompression-bomb guard)")
    max_images_per_request: int = _setting(256, _int(1), "most images in one JSON classify request")
    min_confidence: float = _setting(
        0.5, _float(0.0), "a classification whose calibrated confidence is below this answers digit=false, reason low-confidence"
    )
    max_bulk_images: int = _setting(65536, _int(1), "most images in one .npy batch-classify request")
    max_generate_n: int = _setting(256, _int(1), "most latent rows in one generate request, and largest sample n")
    max_manifold_n: int = _setting(40, _int(1), "largest manifold grid side n (n x n images decoded in one batch)")
    manifold_cache: int = _setting(
        32, _int(0), "manifold PNGs kept in memory (LRU; 0 = off); the default 30x30 grid is rendered at start-up"
    )
    grpc_max_message_bytes: int = _setting(16 * MiB, _parse_bytes, "largest gRPC message, both directions")
    grpc_response_compression: str = _setting(
        "none",
        _parse_grpc_compression,
        "gRPC answers compressed with none, gzip or deflate (Triton's --grpc-infer-response-compression-level); requests in either are always taken",
    )
    drain_delay_s: float = _setting(
        5.0,
        _float(0.0),
        "seconds after SIGTERM that the server still accepts and answers while reporting unready (time for Kubernetes to take it out of its endpoints); `make serve` uses 0",
    )
    drain_timeout_s: float = _setting(
        20.0, _float(0.0), "after the drain delay: seconds to finish every accepted request before exiting (pod grace >= delay + this)"
    )
    keepalive_timeout_s: int = _setting(
        5, _int(1), "idle HTTP keep-alive connections are closed after this many seconds (uvicorn's timeout_keep_alive)"
    )
    max_header_bytes: int = _setting(
        64 << 10, _parse_bytes, "largest HTTP request line + headers; larger requests get 431 (accepts 64KiB style suffixes)"
    )
    request_timeout_s: float = _setting(
        10.0, _float(0.001), "longest time to a response's first byte before a 504 (BentoML's traffic timeout)"
    )
    gc_gen0_threshold: int = _setting(
        20_000, _int(1), "Python's first-generation GC threshold in the workers (default 700 in Python; larger = fewer pauses)"
    )
    workers: int = _setting(2, _int(1), "HTTP worker processes (each loads every model; one event loop per core)")
    tracing: bool = _setting(
        False, _parse_bool, "keep BentoML's OpenTelemetry request spans (set an exporter in BentoML's config); off saves ~15% CPU"
    )
    trace_url: str = _setting(
        "",
        _parse_trace_url,
        "OTLP/HTTP collector the trace extension's spans go to (/v2/trace/setting), e.g. http://127.0.0.1:4318/v1/traces; empty = none (tracing stays OFF)",
    )
    trace_level: str = _setting(
        "OFF", _parse_trace_level, "trace extension's level at start-up: OFF, or TIMESTAMPS and/or TENSORS (needs SERVING_TRACE_URL)"
    )
    trace_rate: int = _setting(
        1000, _int(0, 2**32 - 1), "trace extension's start-up rate: one request in N is traced (per worker); 0 = none"
    )
    trace_count: int = _setting(
        -1, _int(-1, 2**31 - 1), "trace extension's start-up count: traces to take for the whole server, then none; -1 = no limit"
    )
    requests_per_connection: int = _setting(
        100,
        _int(0),
        "HTTP keep-alive connections get 'Connection: close' after this many requests, so clients spread evenly over the workers (0 = never)",
    )
    access_log: bool = _setting(False, _parse_bool, "BentoML's per-request access log lines (off saves CPU on the request path)")
    log_level: str = _setting("INFO", _parse_log_level, "DEBUG, INFO, WARNING, ERROR or CRITICAL")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``SERVING_*`` variables (``os.environ`` by default); ValueError names a bad variable."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            name = env_name(f.name)
            raw = env.get(name)
            if raw is None:
                continue
            try:
                values[f.name] = f.metadata["parse"](raw)
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        settings = cls(**values)
        if bool(settings.tls_cert) != bool(settings.tls_key):
            raise ValueError("SERVING_TLS_CERT and SERVING_TLS_KEY: set both (TLS) or neither (plain text)")
        if settings.tls_client_ca and not settings.tls_cert:
            raise ValueError("SERVING_TLS_CLIENT_CA needs SERVING_TLS_CERT and SERVING_TLS_KEY (mutual TLS is TLS)")
        if settings.trace_level != "OFF" and not settings.trace_url:
            raise ValueError("SERVING_TRACE_LEVEL needs SERVING_TRACE_URL (the OpenTelemetry collector the spans go to)")
        return settings

    def describe(self) -> dict[str, Any]:
        """JSON-friendly view of every setting (for logs and ``GET /v1/models``-style docs)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def env_name(field_name: str) -> str:
    """The environment variable that sets a field: ``http_port`` -> ``SERVING_HTTP_PORT``."""
    return PREFIX + field_name.upper()


def unknown_env_names(env: Mapping[str, str] | None = None) -> list[str]:
    """``SERVING_*`` variables that set nothing (usually typos); worth a warning at start-up."""
    env = os.environ if env is None else env
    known = {env_name(f.name) for f in dataclasses.fields(Settings)}
    return sorted(k for k in env if k.startswith(PREFIX) and k not in known)


def _show_default(value: Any) -> str:
    if value is None or value == ():
        return ""
    if isinstance(value, int) and value >= MiB and value % MiB == 0:
        return f"{value // MiB}MiB"
    return str(value)


def env_table() -> list[tuple[str, str, str]]:
    """``(variable, default, help)`` for every setting, in declaration order."""
    return [(env_name(f.name), _show_default(f.default), f.metadata["help"]) for f in dataclasses.fields(Settings)]


def markdown_table() -> str:
    """:func:`env_table` as a Markdown table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, help_text in env_table():
        shown = f"`{default}`" if default else "(empty)"
        escaped = help_text.replace("|", r"\|")
        lines.append(f"| `{name}` | {shown} | {escaped} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serving.settings", description=__doc__.splitlines()[0])
    parser.add_argument("--current", action="store_true", help="print the settings the current environment yields, as JSON")
    args = parser.parse_args(argv)
    if args.current:
        try:
            settings = Settings.from_env()
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(json.dumps(settings.describe(), indent=2))
    else:
        print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
