"""Every curl, Python and CLI block of README.md, run against the tiny served store, its documented answer checked.

The rules a README edit meets (each is a list below, reviewed like code):

- **What runs.** Every fenced block of the README is read (markdown-it-py) and counted; a ``bash`` or
  ``python`` block runs, any other language must be in ``NOT_RUN`` with why. A bash block is split into
  commands (``\\`` continuations and here-documents kept whole); each runs unless a ``SKIP`` rule (a
  pattern and its reason: trains, Docker, load runs, certificates) matches it. So a new block or
  command runs by default.
- **Which server.** A block's commands run against the session's tiny-store server (``make serve``'s
  settings on free ports); ``make serve`` itself never runs: ``VAR=value make serve`` in a block makes
  the rest of that block run against a server the test starts with that environment (one worker).
- **Where.** The blocks of one ``##`` section run in order in one fresh working directory, so a block
  finds what an earlier one wrote; it links the repository's top-level entries (``.venv``, ``Makefile``,
  ``docs``, ...), the venv's ``bin`` comes first on ``PATH`` (``python``, ``digits-client``), and the
  files a user brings (``digit.png``, ``seven.jpg``, ``shirt.png``, ``batch.npy``: MNIST and
  Fashion-MNIST test images) are put there first.
  The commands are rewritten: the README's addresses (``localhost:3000``, ``127.0.0.1:8500``, ...) to
  the server's, ``/tmp/`` to the working directory and the example version ``1795541821`` to the
  served ``mnist-lstm``'s.
- **What is checked.** Every command exits 0 (a pipeline: its last stage); every curl call it makes
  answers 2xx (a ``.curlrc`` makes curl report each call's status on stderr), or the status a trailing
  ``# 415 ...`` comment names; printed JSON has no ``"error"``; every file the
  section writes is what its name says (PNG, GIF, JPEG, ``.npy``, ``.npz``, JSON); an assignment
  commented with a shape (``x = ...  # [1, 28, 28, 1]`` or ``# float32 16×28×28``) has it; a
  ``text``/``output``/``json`` block right after a runnable block is its last command's documented
  output (lines in order, numbers free; JSON: the same keys, numbers free); and each ``EXPECT`` entry
  checks what the README documents for the commands it matches (answer keys, shapes, image sizes,
  printed lines), tolerant to the values the tiny models give.
- **Nothing goes missing.** Every fence is counted in the raw text and must be read; every ``EXPECT``,
  ``SKIP`` and ``NOT_RUN`` entry must match something in the README; and at least ``RUN_AT_LEAST``
  commands run. So a block that is dropped, hidden from the parser or changed past its rule fails the
  test instead of silently running less.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from markdown_it import MarkdownIt
from PIL import Image

from loadtests.server import REPO, launch, stop, wait_ready

pytestmark = pytest.mark.slow

README = REPO / "README.md"
VENV_BIN = REPO / ".venv" / "bin"
RUN_LANGS = {"bash": "bash", "sh": "bash", "shell": "bash", "python": "python", "py": "python"}
# Right after a runnable block (or after one paragraph ending in ":" below it): what its last command prints.
OUTPUT_LANGS = {"text", "output", "json"}
# Fenced blocks of other languages: not commands (why).
NOT_RUN: dict[str, str] = {}
EXAMPLE_VERSION = "1795541821"  # the README's example version number; rewritten to the served mnist-lstm's
BLOCK_TIMEOUT_S = 300
# Commands (a Python block is one) the README had to run when this was last counted; lower it only with a block
# removed on purpose.
RUN_AT_LEAST = 52

# (pattern searched in a command as written, why it does not run here)
SKIP: list[tuple[str, str]] = [
    (
        r"SERVING_TLS_\w+=|--cacert|ssl=True",
        "needs a CA and certificates made with openssl; tests/e2e/test_tls.py makes them and tests both ports",
    ),
    (r"^make test\b", "is what runs this test"),
    (r"^make (models|quick-models)\b", "trains every model (minutes to twenty); the test store is trained by the session"),
    (r"-m training (train|build|export)\b", "trains or registers models (minutes), changing the store the session's tests serve"),
    (r"^make (loadtest|bench|bench-peers|reliability)\b", "a load run or benchmark against servers of its own (minutes)"),
    (r"-m loadtests\.reliability\b", "starts servers of its own for ~2 minutes; tests/e2e/test_reliability.py runs it"),
    (r"perf_analyzer\b", "a load run; tests/e2e/test_perf_analyzer.py runs every mode"),
    (
        r"^make (base-image|container)\b|^docker\b",
        "needs a Docker engine (and root for debootstrap); tests/e2e/test_container.py tests the image",
    ),
]

SERVE = re.compile(r"^make serve\b")  # (after VAR=value assignments) not run: the rest of the block runs against such a server


# ---------------------------------------------------------------------------- reading the README


@dataclass
class Command:
    section: str
    line: int  # in README.md, 1-based
    text: str  # as written
    lang: str  # "bash" | "python"
    skip: str | None = None  # why it does not run
    serve: dict[str, str] | None = None  # a `VAR=value make serve`: the environment the rest of its block is served with


@dataclass
class Block:
    section: str
    line: int
    lang: str
    commands: list[Command]
    output: tuple[str, str] | None = None  # (language, text) of the documented output that follows it


@dataclass
class Readme:
    fences: int  # fence lines counted in the raw text, / 2
    blocks: list[Block]  # runnable blocks
    other: list[tuple[int, str]]  # (line, language) of blocks that do not run

    def commands(self) -> list[Command]:
        return [c for b in self.blocks for c in b.commands]

    def section_blocks(self, section: str) -> list[Block]:
        return [b for b in self.blocks if b.section == section]


def split_commands(code: str) -> list[tuple[int, str]]:
    """A shell block's commands as (line offset, text): continuation lines and here-documents stay whole."""
    lines = code.splitlines()
    commands: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip() or lines[i].lstrip().startswith("#"):
            i += 1
            continue
        start, parts = i, [lines[i]]
        while parts[-1].rstrip().endswith("\\") and i + 1 < len(lines):
            i += 1
            parts.append(lines[i])
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", "\n".join(parts))
        if heredoc:
            while i + 1 < len(lines):
                i += 1
                parts.append(lines[i])
                if lines[i].strip() == heredoc[1]:
                    break
        commands.append((start, "\n".join(parts)))
        i += 1
    return commands


def bare(text: str) -> tuple[dict[str, str], str]:
    """A command's leading ``VAR=value`` assignments, and the command after them."""
    env: dict[str, str] = {}
    while match := re.match(r"([A-Z_][A-Z0-9_]*)=('[^']*'|\"[^\"]*\"|\S*)\s+", text):
        env[match[1]] = shlex.split(match[2])[0] if match[2] else ""
        text = text[match.end() :]
    return env, text


def skip_reason(text: str) -> str | None:
    for pattern, why in SKIP:
        if re.search(pattern, text, re.M) or re.search(pattern, bare(text)[1], re.M):
            return why
    return None


def read_readme(text: str) -> Readme:
    tokens = MarkdownIt("commonmark").parse(text)
    fence_lines = sum(1 for line in text.splitlines() if re.match(r"\s*(```|~~~)", line))
    blocks: list[Block] = []
    other: list[tuple[int, str]] = []
    section = "(top)"
    last_runnable: Block | None = None
    last_end = -1  # index of the token after the last runnable fence
    for n, token in enumerate(tokens):
        if token.type == "heading_open" and token.tag == "h2":
            section = tokens[n + 1].content.strip()
            last_runnable = None
        if token.type != "fence":
            continue
        assert token.map is not None
        line = token.map[0] + 1
        lang = token.info.split()[0] if token.info.strip() else ""
        between = tokens[last_end:n]
        adjacent = not between or (
            [t.type for t in between] == ["paragraph_open", "inline", "paragraph_close"] and between[1].content.rstrip().endswith(":")
        )
        if lang in OUTPUT_LANGS and last_runnable is not None and last_runnable.output is None and adjacent:
            last_runnable.output = (lang, token.content)
            continue
        if lang not in RUN_LANGS:
            other.append((line, lang))
            last_runnable = None
            continue
        kind = RUN_LANGS[lang]
        if kind == "python":
            commands = [Command(section, line + 1, token.content, kind)]
        else:
            commands = [Command(section, line + 1 + offset, cmd, kind) for offset, cmd in split_commands(token.content)]
        for command in commands:
            command.skip = skip_reason(command.text)
            env, rest = bare(command.text)
            if kind == "bash" and command.skip is None and SERVE.match(rest):
                command.serve = env
        last_runnable, last_end = Block(section, line, kind, commands), n + 1
        blocks.append(last_runnable)
    return Readme(fence_lines // 2, blocks, other)


README_DOC = read_readme(README.read_text())


# ---------------------------------------------------------------------------- running blocks


@dataclass
class Ran:
    """One command (a Python block is one command) after it ran."""

    command: Command
    cwd: Path
    rc: int
    stdout: str
    stderr: str
    curls: list[tuple[int, str, str]] = field(default_factory=list)  # (status, method, url) per curl call
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)  # a Python block's arrays

    def json(self) -> Any:
        return json.loads(self.stdout)

    def image(self, name: str) -> Image.Image:
        return Image.open(self.cwd / name)

    def lines(self) -> list[str]:
        return [line for line in self.stdout.splitlines() if line.strip()]

    def report(self) -> str:
        return (
            f"README.md:{self.command.line} ({self.command.section}), run in {self.cwd}:\n{self.command.text}\n"
            f"-- exit {self.rc}; curl calls {self.curls}\n-- stdout:\n{self.stdout[-3000:]}\n-- stderr:\n{self.stderr[-3000:]}"
        )


CURLRC = 'write-out = "%{stderr}@@curl %{http_code} %{method} %{url_effective}@@\\n"\n'
CURL_LINE = re.compile(r"@@curl (\d+) (\S+) (\S+)@@\n?")
# Runs a Python block and describes its arrays (shape, dtype; small ones' values) for the checks.
PY_RUNNER = """
import json, runpy, sys
import numpy as np
ns = runpy.run_path(sys.argv[1], run_name="__main__")
def value(a):
    return [v.decode() if isinstance(v, bytes) else v for v in a.ravel().tolist()] if a.size <= 64 else None
arrays = {k: {"shape": list(v.shape), "dtype": str(v.dtype), "values": value(v)} for k, v in ns.items() if isinstance(v, np.ndarray)}
json.dump(arrays, open(sys.argv[2], "w"), default=str)
"""


def rewrite(text: str, rewrites: list[tuple[str, str]]) -> str:
    for pattern, replacement in rewrites:
        text = re.sub(pattern, replacement, text)
    return text


def run_bash(commands: list[Command], cwd: Path, env: dict[str, str], rewrites: list[tuple[str, str]], name: str) -> list[Ran]:
    script = ""
    for i, command in enumerate(commands):
        script += f"printf '\\n@@readme-test {i}@@\\n'; printf '\\n@@readme-test {i}@@\\n' >&2\n"
        script += rewrite(command.text, rewrites) + "\n"
        script += f"printf '\\n@@readme-test-rc {i} %d@@\\n' $? >&2\n"
    path = cwd / f"block-{name}.sh"
    path.write_text(script)
    done = subprocess.run(
        ["bash", str(path)], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S
    )
    outs = re.split(r"\n@@readme-test \d+@@\n", done.stdout)[1:]
    errs = re.split(r"\n@@readme-test \d+@@\n", done.stderr)[1:]
    assert len(outs) == len(errs) == len(commands), f"README.md:{commands[0].line} on did not run through:\n{done.stderr[-3000:]}"
    ran = []
    for command, out, err in zip(commands, outs, errs):
        rc_mark = re.search(r"\n@@readme-test-rc \d+ (\d+)@@\n", err)
        assert rc_mark is not None, err
        err = err[: rc_mark.start()]
        curls = [(int(s), m, u) for s, m, u in CURL_LINE.findall(err)]
        ran.append(Ran(command, cwd, int(rc_mark[1]), out, CURL_LINE.sub("", err), curls))
    return ran


def run_python(command: Command, cwd: Path, env: dict[str, str], rewrites: list[tuple[str, str]], name: str) -> list[Ran]:
    path, variables = cwd / f"block-{name}.py", cwd / f"block-{name}.json"
    path.write_text(rewrite(command.text, rewrites))
    done = subprocess.run(
        [str(VENV_BIN / "python"), "-c", PY_RUNNER, str(path), str(variables)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    arrays = json.loads(variables.read_text()) if done.returncode == 0 else {}
    return [Ran(command, cwd, done.returncode, done.stdout, done.stderr, variables=arrays)]


# ---------------------------------------------------------------------------- the documented answers


def answer_keys(doc: Any, *keys: str) -> None:
    assert isinstance(doc, dict) and set(keys) <= set(doc), f"answer {str(doc)[:300]} lacks some of {keys}"


def classify_answer(n: int) -> Callable[[Ran], None]:
    """``{"model", "version", "predictions": [{"label", "probabilities": [10]}]}`` with n predictions."""

    def check(ran: Ran) -> None:
        doc = ran.json()
        answer_keys(doc, "model", "version", "predictions")
        assert len(doc["predictions"]) == n
        for prediction in doc["predictions"]:
            answer_keys(prediction, "label", "probabilities")
            assert prediction["label"] in range(10) and len(prediction["probabilities"]) == 10

    return check


def image(name: str, fmt: str, size: tuple[int, int] | None = None, frames: int | None = None) -> Callable[[Ran], None]:
    """The file ``name`` is a ``fmt`` image of ``size`` (width, height), with ``frames`` frames."""

    def check(ran: Ran) -> None:
        with ran.image(name) as img:
            assert img.format == fmt, (name, img.format)
            if size is not None:
                assert img.size == size, (name, img.size, size)
            if frames is not None:
                assert getattr(img, "n_frames", 1) == frames and img.info.get("loop") == 0, (name, img.info)

    return check


def sample_grid(name: str, n: int) -> Callable[[Ran], None]:
    """A PNG grid of n 28×28 images."""

    def check(ran: Ran) -> None:
        with ran.image(name) as img:
            assert img.format == "PNG" and img.width % 28 == 0 and img.height % 28 == 0
            assert (img.width // 28) * (img.height // 28) >= n > (img.width // 28) * (img.height // 28 - 1), img.size

    return check


def array(name: str, shape: tuple[int, ...], dtype: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        a = np.load(ran.cwd / name, allow_pickle=False)
        assert (a.shape, str(a.dtype)) == (shape, dtype), (name, a.shape, a.dtype)

    return check


def variable(name: str, shape: tuple[int, ...], dtype: str | None = None) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        got = ran.variables[name]
        assert tuple(got["shape"]) == shape and (dtype is None or got["dtype"] == dtype), (name, got)

    return check


def printed(pattern: str, count: int | None = None) -> Callable[[Ran], None]:
    """Every printed line (``count`` of them) matches ``pattern``."""

    def check(ran: Ran) -> None:
        lines = ran.lines()
        assert lines and all(re.search(pattern, line) for line in lines), (pattern, lines[:20])
        assert count is None or len(lines) == count, (count, lines[:20])

    return check


def says(*words: str) -> Callable[[Ran], None]:
    """The printed text contains every one of ``words``."""

    def check(ran: Ran) -> None:
        assert all(w in ran.stdout for w in words), (words, ran.stdout[:1000])

    return check


def json_answer(check_doc: Callable[[Any], None]) -> Callable[[Ran], None]:
    return lambda ran: check_doc(ran.json())


def empty_object(doc: Any) -> None:
    assert doc == {}, doc


def label_answer(doc: Any) -> None:
    answer_keys(doc, "model", "labels")


def v2_metadata(doc: Any) -> None:
    answer_keys(doc, "name", "versions", "platform", "inputs", "outputs")
    assert doc["platform"] == "onnxruntime_onnx" and doc["inputs"][0]["name"] == "images"


def v2_infer(doc: Any) -> None:
    answer_keys(doc, "model_name", "outputs")
    [out] = doc["outputs"]
    assert (out["name"], out["shape"], len(out["data"])) == ("probabilities", [1, 10], 10)


def v2_stats(doc: Any) -> None:
    answer_keys(doc, "model_stats")
    assert doc["model_stats"] and all({"name", "version", "inference_stats"} <= set(s) for s in doc["model_stats"])


def repository_index(doc: Any) -> None:
    assert isinstance(doc, list) and doc
    assert all({"name", "version", "state", "reason"} <= set(row) for row in doc)
    assert {row["state"] for row in doc} <= {"READY", "LOADING", "UNAVAILABLE"}


def encode_answer(doc: Any) -> None:
    answer_keys(doc, "model", "version", "z_mean", "z_log_var")
    assert np.shape(doc["z_mean"]) == np.shape(doc["z_log_var"]) == (1, 2)


def reconstruct_header(ran: Ran) -> None:
    printed(r"(?i)^x-reconstruction-loss: [0-9.]+", 1)(ran)
    image("pair.png", "PNG", (56, 28))(ran)


def top_classes(top: dict[str, Any], k: int) -> None:
    """Triton's classification extension: k ``"score:index:label"`` strings per row."""
    assert top["shape"] == [1, k] and all(re.fullmatch(r"[0-9.e-]+:\d:\d", v) for v in top["values"]), top


def cli_bulk_json(doc: Any) -> None:
    assert isinstance(doc, list) and doc
    assert all({"file", "index", "label", "probabilities"} <= set(row) for row in doc)


def v1_models_head(ran: Ran) -> None:
    assert ran.stdout.startswith("{") and '"models"' in ran.stdout and len(ran.lines()) == 40, ran.stdout[:500]


def ensemble_members_head(ran: Ran) -> None:
    assert '"model": "ensemble"' in ran.stdout and '"members"' in ran.stdout and len(ran.lines()) == 30, ran.stdout[:800]


def members_lines(n: int) -> Callable[[Ran], None]:
    """The CLI's ensemble answer: its label and top-3, then one line per member."""

    def check(ran: Ran) -> None:
        first, *members = ran.lines()
        assert re.match(rf"^digit\.png: {TOP3}  \[ensemble ", first) and len(members) == n, ran.stdout
        assert all(re.fullmatch(r"  [a-z-]+: \d  \([0-9.]+\)", line) for line in members), members

    return check


def error_naming(*words: str) -> Callable[[Ran], None]:
    """The API's error shape, its message naming ``words``."""

    def check(ran: Ran) -> None:
        doc = ran.json()
        assert isinstance(doc, dict) and isinstance(doc.get("error"), str) and all(w in doc["error"] for w in words), doc

    return check


@dataclass
class Expect:
    pattern: str  # searched in a command as written
    check: Callable[[Ran], None]


M = 30  # the manifold's default n
# the CLI's "label and top-3" with its calibrated confidence, `7  (7 0.836, 9 0.104, 8 0.021)  88% sure`, or (what the
# tiny test store's models often say of a real digit) `not a digit (low-confidence); best guess 7  (7 0.436, ...)`
TOP3 = r"(not a digit \(.*?\); best guess )?\d  \(\d [0-9.]+, \d [0-9.]+, \d [0-9.]+\)(  \d+% sure)?"
EXPECT: list[Expect] = [
    # HTTP API
    Expect(r"-d @/tmp/req\.json", classify_answer(2)),
    Expect(r"/v1/classify/image\?model=gated-rnn", classify_answer(1)),
    Expect(r"/v1/classify/batch\?model=lstm", array("tmp/probs.npy", (1024, 10), "float32")),
    Expect(r"/v1/generate -H .* -o coat\.png", image("coat.png", "PNG", (28, 28))),
    Expect(r"/v1/generate/sample .*-o grid\.png", sample_grid("grid.png", 16)),
    Expect(r"/v1/generate/manifold\?model=vae4&n=30", image("manifold.png", "PNG", (28 * M, 28 * M))),
    Expect(r"/v1/models \| python -m json\.tool \| head -40", v1_models_head),
    Expect(r"model=ensemble&members=true", ensemble_members_head),
    Expect(r"/v1/encode\?model=vae2", json_answer(encode_answer)),
    Expect(r"/v1/reconstruct\?model=vae4", reconstruct_header),
    Expect(r"/v1/generate/interpolate", image("walk.gif", "GIF", (28, 28), frames=12)),
    Expect(r"manifold\?model=vae2&axes=true", image("manifold-axes.png", "PNG", (28 * M + 72, 28 * M + 76))),
    Expect(r"/v1/plots/clusters", image("clusters.png", "PNG", (720, 560))),
    Expect(r"/v1/plots/confusion", image("confusion.png", "PNG", (480, 492))),
    # gRPC API (TF Serving)
    Expect(r"prediction_service_pb2_grpc", variable("probabilities", (1, 10), "float32")),
    # OIP v2
    Expect(r"curl -s localhost:3000/v2/models/lstm$", json_answer(v2_metadata)),
    Expect(r"/v2/models/mnist-lstm/infer", json_answer(v2_infer)),
    Expect(r"http\.infer\(\"mnist-lstm\", \[x\]\)", variable("probabilities", (2, 10), "float32")),
    Expect(r"register_system_shared_memory", printed(r"^\[(\d ){3}\d\]$", 1)),
    Expect(r"class_count=2", lambda ran: top_classes(ran.variables["top2"], 2)),
    Expect(r"start_stream", printed(r"^[0-7] \d$", 8)),
    Expect(r"content-encoding: gzip", classify_answer(1)),
    Expect(r"/v2/models/lstm/stats", json_answer(v2_stats)),
    Expect(r"/v2/models/stats +# 403", error_naming("stats-key")),
    Expect(r"/v2/models/stats -H 'stats-key: ", json_answer(v2_stats)),
    Expect(
        r"trace/setting -d '\{\"trace_level\": \[\"TIMESTAMPS", says('"trace_mode":"opentelemetry"', '"TIMESTAMPS"', '"trace_rate":"100"')
    ),
    Expect(r"/v2/logging -d '\{\"log_verbose_level\": -1", error_naming("log_verbose_level")),
    Expect(r"trace/setting -d '\{\"trace_level\": \[\"OFF", says('"trace_level":["OFF"]')),
    Expect(r"update_log_settings", says("{'value': ['5']}", "False", "'log_info': True")),
    # the control API
    Expect(r"/v2/repository/index", json_answer(repository_index)),
    Expect(r"/v2/repository/models/mnist-lstm/(load|unload)", json_answer(empty_object)),
    Expect(r"-X(PUT|DELETE) .*/labels/stable", json_answer(label_answer)),
    # Python client and CLI
    Expect(
        r"from clients import connect",
        lambda ran: (
            printed(r"^\d \[\(\d, [0-9.e-]+\)(, \(\d, [0-9.e-]+\)){2}\]$", 1)(ran),
            image("manifold.png", "PNG", (28 * M, 28 * M))(ran),
        ),
    ),
    Expect(r"digits-client classify digit\.png seven\.jpg", printed(rf"^(digit\.png|seven\.jpg): {TOP3}", 2)),
    Expect(r"digits-client classify batch\.npy .*--json", json_answer(cli_bulk_json)),
    Expect(r"digits-client --grpc .* classify digit\.png", printed(rf"^digit\.png: {TOP3}", 1)),
    Expect(r"digits-client generate --z 1\.4 -1\.3 -o coat\.png", image("coat.png", "PNG", (28, 28))),
    Expect(r"digits-client sample -n 16 --seed 1 -o grid\.png", sample_grid("grid.png", 16)),
    Expect(r"digits-client manifold --model vae4 --n 15", image("manifold.png", "PNG", (28 * 15, 28 * 15))),
    Expect(r"from clients import NotOfferedError", printed(r"is not offered over gRPC.*use HTTP", 1)),
    Expect(r"interpolate_gif\(", image("walk.gif", "GIF", (28, 28), frames=12)),
    Expect(r"digits-client classify digit\.png --model ensemble --members", members_lines(7)),
    Expect(r"digits-client encode shirt\.png --model vae4", printed(r"^shirt\.png: z_mean \[([-0-9.]+, ){3}[-0-9.]+\]  z_log_var \[", 1)),
    Expect(r"digits-client reconstruct shirt\.png -o pair\.png", image("pair.png", "PNG", (56, 28))),
    Expect(r"digits-client interpolate --z .* --steps 12 -o walk\.gif", image("walk.gif", "GIF", (28, 28), frames=12)),
    Expect(r"digits-client .*interpolate --images .* -o strip\.png", image("strip.png", "PNG", (28 * 10, 28))),
    Expect(r"digits-client plot confusion .*-o confusion\.png", image("confusion.png", "PNG", (480, 492))),
    Expect(r"digits-client plot clusters .*-o clusters\.png", image("clusters.png", "PNG", (720, 560))),
    Expect(r"digits-client manifold --axes -o manifold-axes\.png", image("manifold-axes.png", "PNG", (28 * M + 72, 28 * M + 76))),
    Expect(r"digits-client models$", says("NAME", "mnist-lstm", "mnist-ensemble", "fashion-vae2-decoder", "fashion-vae4-encoder")),
    Expect(r"digits-client health && echo ready", printed(r"^(live: yes|ready: yes|ready)$", 3)),
    # Training, Deployment
    Expect(r"-m training --help", says("usage: python -m training", "train", "export", "build")),
    Expect(r"curl -s localhost:3000/readyz; curl", says('{"models":[{"name":')),
]


def expected_status(ran: Ran) -> int | None:
    """The status a trailing ``# 415 ...`` comment names; None: any 2xx."""
    comment = re.search(r"(?:^|\s)#\s*(?:→\s*)?([1-5]\d\d)\b", ran.command.text.splitlines()[-1])
    return int(comment[1]) if comment else None


SHAPE_NOTE = re.compile(
    r"^\s*(?P<name>\w+)\s*=.*#\s*(?:(?P<dtype>u?int\d+|float\d+|bool)\s+)?(?P<shape>\[\d+(?:,\s*\d+)*\]|\d+(?:\s*[×x]\s*\d+)+)\s*$", re.M
)


def check_shape_notes(ran: Ran) -> None:
    for note in SHAPE_NOTE.finditer(ran.command.text):
        shape = tuple(int(d) for d in re.findall(r"\d+", note["shape"]))
        variable(note["name"], shape, note["dtype"])(ran)


def numbers_free(line: str) -> str:
    """A documented output line as a pattern: numbers may differ, runs of spaces may differ, `...` is anything."""
    out = ""
    for part in re.split(r"(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?|\s+|\.\.\.|…)", line.strip()):
        if not part:
            continue
        if re.fullmatch(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", part):
            out += r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?"
        elif part.isspace():
            out += r"\s+"
        elif part in ("...", "…"):
            out += ".*"
        else:
            out += re.escape(part)
    return out


def same_shape(doc: Any, got: Any, where: str = "answer") -> None:
    """``got`` has the documented ``doc``'s keys and kinds of values; numbers and strings may differ."""
    if isinstance(doc, dict):
        assert isinstance(got, dict) and set(doc) == set(got), (
            f"{where}: keys {sorted(got) if isinstance(got, dict) else got} != {sorted(doc)}"
        )
        for key in doc:
            same_shape(doc[key], got[key], f"{where}.{key}")
    elif isinstance(doc, list):
        assert isinstance(got, list) and len(got) >= len(doc), f"{where}: {str(got)[:200]} is not a list of at least {len(doc)}"
        for i, item in enumerate(doc):
            same_shape(item, got[i], f"{where}[{i}]")
    elif isinstance(doc, bool) or doc is None:
        assert got is doc or type(got) is type(doc), f"{where}: {got!r} is not like {doc!r}"
    elif isinstance(doc, int | float):
        assert isinstance(got, int | float) and not isinstance(got, bool), f"{where}: {got!r} is not a number"
    else:
        assert isinstance(got, type(doc)), f"{where}: {got!r} is not like {doc!r}"


def check_documented_output(lang: str, documented: str, printed_text: str) -> None:
    if lang == "json":
        same_shape(json.loads(documented), json.loads(printed_text))
        return
    lines = iter(printed_text.splitlines())
    for want in filter(str.strip, documented.splitlines()):
        pattern = numbers_free(want)
        assert any(re.fullmatch(pattern, line.strip()) for line in lines), (
            f"documented line {want!r} not printed (in order) in:\n{printed_text[-2000:]}"
        )


# ---------------------------------------------------------------------------- servers and files


@dataclass
class Address:
    http: str  # host:port
    grpc: str  # host:port


@pytest.fixture(scope="module")
def servers(server: Any, trained_store: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[dict[str, str]], Address]]:
    """The server for a block: the session's for ``{}``, else one started on the same store with that environment."""
    started: dict[tuple[tuple[str, str], ...], Any] = {}

    def serve(env: dict[str, str]) -> Address:
        if not env:
            return Address(server.http_url.removeprefix("http://"), server.grpc_target)
        key = tuple(sorted(env.items()))
        if key not in started:
            home = tmp_path_factory.mktemp("readme-home")
            (home / "models").symlink_to(Path(trained_store.home).resolve() / "models", target_is_directory=True)
            extra = {"SERVING_STATE_DIR": str(tmp_path_factory.mktemp("readme-state")), "SERVING_WORKERS": "1", **env}
            started[key] = launch(tmp_path_factory.mktemp("readme-server") / "server.log", str(home), extra_env=extra)
            wait_ready(started[key], timeout=120)
        return Address(started[key].http_url.removeprefix("http://"), started[key].grpc_target)

    try:
        yield serve
    finally:
        for service in started.values():
            stop(service)


@pytest.fixture(scope="module")
def brought(server: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a reader brings: a photo of a digit, a JPEG of a seven, a picture of a shirt, an .npy batch."""
    from training.data import load

    cwd = tmp_path_factory.mktemp("readme-brought")
    digit = Image.fromarray(server.test_images[0]).resize((140, 140), Image.Resampling.BILINEAR)
    digit.save(cwd / "digit.png")
    seven = server.test_images[int(np.flatnonzero(server.test_labels == 7)[0])]
    Image.fromarray(seven).convert("RGB").save(cwd / "seven.jpg", quality=95)
    fashion = load("fashion-mnist", os.environ.get("DATA_DIR") or str(REPO.parent / "shared" / "datasets"), test_limit=100)
    shirt = fashion.x_test[int(np.flatnonzero(fashion.y_test == 6)[0])]
    Image.fromarray(shirt).resize((96, 96)).save(cwd / "shirt.png")
    np.save(cwd / "batch.npy", server.test_images[:8])
    return cwd


def working_dir(cwd: Path, brought: Path) -> set[str]:
    """``cwd`` as the repository root a reader runs from: links to its top-level entries (``.venv``, ``Makefile``,
    ``docs``, ...) and copies of the brought files; returns the names that were there before the blocks ran."""
    for entry in REPO.iterdir():
        if entry.name == ".venv" or not (
            entry.name.startswith(".") or entry.name in ("results", "README.md") or entry.suffix == ".egg-info"
        ):
            (cwd / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    for entry in brought.iterdir():
        shutil.copy(entry, cwd / entry.name)
    (cwd / "tmp").mkdir()
    (cwd / "curl").mkdir()
    (cwd / "curl" / ".curlrc").write_text(CURLRC)
    return {p.name for p in cwd.iterdir()}


def check_file(path: Path) -> None:
    """A file the blocks wrote is what its name says."""
    suffix = path.suffix.lower()
    if suffix in (".png", ".gif", ".jpg", ".jpeg"):
        with Image.open(path) as img:
            assert img.format == {".png": "PNG", ".gif": "GIF"}.get(suffix, "JPEG"), (path, img.format)
            img.load()
    elif suffix == ".npy":
        np.load(path, allow_pickle=False)
    elif suffix == ".npz":
        np.load(path, allow_pickle=False).close()
    elif suffix == ".json":
        json.loads(path.read_text())


# ---------------------------------------------------------------------------- the tests


def test_every_block_is_read_and_every_rule_is_used() -> None:
    doc = README_DOC
    assert doc.fences == len(doc.blocks) + len(doc.other) + sum(b.output is not None for b in doc.blocks), "a fence was not read"
    assert not [(line, lang) for line, lang in doc.other if lang not in NOT_RUN], (
        "blocks of a language nothing runs; run them or list in NOT_RUN"
    )
    commands = doc.commands()
    runnable = [c for c in commands if c.skip is None and c.serve is None]
    assert len(runnable) >= RUN_AT_LEAST, f"{len(runnable)} README commands run, fewer than the {RUN_AT_LEAST} counted: a block was lost"
    for expect in EXPECT:
        matched = [c for c in commands if re.search(expect.pattern, c.text, re.M)]
        assert matched, f"EXPECT {expect.pattern!r} matches no command of README.md: update it with the README"
        assert all(c.skip is None for c in matched), f"EXPECT {expect.pattern!r} matches a skipped command"
    for pattern, why in SKIP:
        assert any(re.search(pattern, c.text, re.M) for c in commands), f"SKIP {pattern!r} ({why}) matches no command: drop it"
    for lang in NOT_RUN:
        assert any(lang == other for _, other in doc.other), f"NOT_RUN {lang!r}: no such block"


def test_documented_outputs_are_compared_tolerantly() -> None:
    """The comparison of a documented output block: numbers may differ, words, keys and order may not."""
    check_documented_output("text", "digit.png: 7  (0.91)\n...\nready", "noise\ndigit.png: 3  (0.40)\nmore\nready\n")
    with pytest.raises(AssertionError):
        check_documented_output("text", "ready\ndigit.png: 7", "digit.png: 3\nready\n")
    check_documented_output("json", '{"model": "lstm", "p": [0.1, 0.9], "ok": true}', '{"model": "x", "p": [0.5, 0.5, 1], "ok": false}')
    with pytest.raises(AssertionError):
        check_documented_output("json", '{"model": "lstm", "p": [0.1]}', '{"model": "lstm", "probabilities": [0.1]}')


def section_params() -> list[Any]:
    runs = [
        s
        for s in dict.fromkeys(b.section for b in README_DOC.blocks)
        if any(c.skip is None and c.serve is None for b in README_DOC.section_blocks(s) for c in b.commands)
    ]
    return [pytest.param(s, id=re.sub(r"\W+", "-", s).strip("-").lower()) for s in runs]


@pytest.mark.parametrize("section", section_params())
def test_readme_section_runs_as_documented(
    section: str, servers: Callable[[dict[str, str]], Address], brought: Path, tmp_path: Path
) -> None:
    assert shutil.which("curl"), "the README's examples need curl (apt-get install curl)"
    there = working_dir(tmp_path, brought)

    def run(commands: list[Command], address: Address, name: str) -> list[Ran]:
        version = httpx.get(f"http://{address.http}/v1/models/mnist-lstm", timeout=30).json()["version_number"]
        rewrites = [
            (r"\b(?:localhost|127\.0\.0\.1):3000\b", address.http),
            (r"\b(?:localhost|127\.0\.0\.1):8500\b", address.grpc),
            (r"(?<![\w./])/tmp/", f"{tmp_path}/tmp/"),
            (rf"\b{EXAMPLE_VERSION}\b", str(version)),
        ]
        env = {
            **os.environ,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "VIRTUAL_ENV": str(REPO / ".venv"),
            "CURL_HOME": str(tmp_path / "curl"),
            "SERVING_URL": f"http://{address.http}",
            "PYTHONUNBUFFERED": "1",
        }
        if commands[0].lang == "python":
            return run_python(commands[0], tmp_path, env, rewrites, name)
        return run_bash(commands, tmp_path, env, rewrites, name)

    ran: list[Ran] = []
    for n, block in enumerate(README_DOC.section_blocks(section)):
        # a block runs against the session's server until a `VAR=value make serve` in it names another
        segments: list[tuple[Address, list[Command]]] = [(servers({}), [])]
        for command in block.commands:
            if command.serve is not None:
                segments.append((servers(command.serve), []))
            elif command.skip is None:
                segments[-1][1].append(command)
        results = [r for i, (address, commands) in enumerate(segments) if commands for r in run(commands, address, f"{n}-{i}")]
        for result in results:
            expects = [e for e in EXPECT if re.search(e.pattern, result.command.text, re.M)]
            assert result.rc == 0, result.report()
            status = expected_status(result)
            for code, method, url in result.curls:
                assert (code == status) if status else (200 <= code < 300), f"curl {method} {url} answered {code}\n{result.report()}"
            if result.stdout.lstrip()[:1] in ("{", "[") and result.command.lang == "bash":
                try:
                    doc = json.loads(result.stdout)
                except ValueError:
                    doc = None  # a piece of JSON (| head)
                assert not (isinstance(doc, dict) and "error" in doc) or (status or 0) >= 400, result.report()
            check_shape_notes(result)
            for expect in expects:
                try:
                    expect.check(result)
                except Exception as error:
                    raise AssertionError(f"{expect.pattern!r}: {error!r}\n{result.report()}") from error
        if block.output is not None and results:
            try:
                check_documented_output(*block.output, results[-1].stdout)
            except AssertionError as error:
                raise AssertionError(f"the output documented after README.md:{block.line}: {error}") from error
        ran += results
    assert ran, f"nothing of {section!r} ran"
    for folder, _dirs, files in os.walk(tmp_path):  # not into the .venv link
        for name in files:
            path = Path(folder) / name
            if path.parent.name != "curl" and not name.startswith("block-") and (path.parent != tmp_path or name not in there):
                check_file(path)
