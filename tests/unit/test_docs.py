"""What the docs and `make help` tell a user: the files the docs name exist; help text without escape codes in a pipe."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A repository path as the docs write it: one of the project's top folders, then a file with an extension.
PATH = re.compile(
    r"(?<![\w/.-])((?:tests|loadtests|serving|contract|training|clients|deploy|docs)/[\w./-]*\.(?:py|md|yaml|yml|j2|json|lock))"
)


def named_paths() -> list[tuple[str, int, str]]:
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for number, line in enumerate(doc.read_text().splitlines(), 1):
            for match in PATH.finditer(line):
                found.append((doc.name, number, match.group(1).rstrip(".")))
    return found


def test_every_path_the_docs_name_exists() -> None:
    paths = named_paths()
    assert len(paths) > 50  # the pattern still finds the docs' paths
    missing = [f"{doc}:{line}: {path}" for doc, line, path in paths if not (REPO / path).exists()]
    assert not missing, "the docs name files that do not exist:\n" + "\n".join(missing)


def test_make_help_prints_no_colour_codes_off_a_terminal() -> None:
    import subprocess

    out = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, check=True, timeout=30).stdout
    assert "container-test" in out and "base-image" in out
    assert "\x1b[" not in out
