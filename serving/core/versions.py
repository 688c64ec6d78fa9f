"""Which versions of a model to serve, and what a requested version or label means: pure rules, no I/O.

Version policies are TF Serving's ``model_version_policy``: ``latest`` (the newest one),
``latest N``, ``specific V1,V2`` and ``all``; ``SERVING_VERSION_POLICY`` holds one policy for every
model, or ``model=policy`` entries separated by ``;`` (an entry without ``model=`` is the default):

    SERVING_VERSION_POLICY="latest"                          # the default
    SERVING_VERSION_POLICY="latest; mnist-lstm=latest 2"     # two LSTM versions side by side
    SERVING_VERSION_POLICY="mnist-lstm=specific 1795541821,1795600000"

Labels name a served version (``stable``, ``canary``): ``SERVING_VERSION_LABELS`` =
``mnist-lstm:stable=1795541821,canary=1795600000; ...``. An unversioned request goes to the
``stable`` label when it is set and served, else to the newest served version. A version is
written as its number (registration time in seconds, what TF Serving and v2 use) or its store tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_KEY = "*"
STABLE = "stable"


class Version(Protocol):
    """What the rules need of a stored or served version."""

    @property
    def version(self) -> str: ...  # the store tag's version

    @property
    def version_number(self) -> int: ...


@dataclass(frozen=True)
class VersionPolicy:
    kind: str  # "latest", "specific" or "all"
    count: int = 1
    versions: tuple[str, ...] = ()

    def select(self, stored: Iterable[Version]) -> list[Version]:
        """The versions this policy serves out of ``stored``, newest first."""
        newest_first = sorted(stored, key=lambda v: (v.version_number, v.version), reverse=True)
        if self.kind == "all":
            return newest_first
        if self.kind == "latest":
            return newest_first[: self.count]
        return [v for v in newest_first if matches(v, self.versions)]

    def __str__(self) -> str:
        if self.kind == "latest":
            return "latest" if self.count == 1 else f"latest {self.count}"
        return "all" if self.kind == "all" else f"specific {','.join(self.versions)}"


LATEST = VersionPolicy("latest")


def matches(v: Version, wanted: Iterable[str]) -> bool:
    """True when ``v`` is named by any of ``wanted`` (a version number or a store tag's version)."""
    return any(w in (str(v.version_number), v.version) for w in wanted)


def parse_policy(text: str) -> VersionPolicy:
    words = text.split(None, 1)
    if not words:
        raise ValueError("an empty version policy; use latest, 'latest N', 'specific V1,V2' or all")
    kind, rest = words[0].lower(), (words[1].strip() if len(words) > 1 else "")
    if kind == "latest":
        if not rest:
            return LATEST
        if not rest.isdigit() or int(rest) < 1:
            raise ValueError(f"'latest N' needs a whole number N >= 1, got {text!r}")
        return VersionPolicy("latest", count=int(rest))
    if kind == "all" and not rest:
        return VersionPolicy("all")
    if kind == "specific":
        versions = tuple(v.strip() for v in rest.split(",") if v.strip())
        if not versions:
            raise ValueError(f"'specific' needs versions, e.g. 'specific 1795541821,1795600000', got {text!r}")
        return VersionPolicy("specific", versions=versions)
    raise ValueError(f"unknown version policy {text!r}; use latest, 'latest N', 'specific V1,V2' or all")


def parse_policies(raw: str) -> dict[str, VersionPolicy]:
    """``"latest; mnist-lstm=latest 2"`` -> ``{"*": latest, "mnist-lstm": latest 2}``."""
    policies: dict[str, VersionPolicy] = {DEFAULT_KEY: LATEST}
    for entry in (e.strip() for e in raw.split(";")):
        if not entry:
            continue
        name, sep, text = entry.partition("=")
        key = name.strip() if sep else DEFAULT_KEY
        if sep and not key:
            raise ValueError(f"a model name is missing before '=' in {entry!r}")
        policies[key] = parse_policy(text if sep else entry)
    return policies


def policy_for(policies: Mapping[str, VersionPolicy], store_name: str) -> VersionPolicy:
    return policies.get(store_name, policies.get(DEFAULT_KEY, LATEST))


def parse_labels(raw: str) -> dict[str, dict[str, str]]:
    """``"mnist-lstm:stable=1795541821,canary=1795600000"`` -> ``{"mnist-lstm": {"stable": "1795541821", ...}}``."""
    labels: dict[str, dict[str, str]] = {}
    for entry in (e.strip() for e in raw.split(";")):
        if not entry:
            continue
        name, sep, pairs = entry.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"expected 'model:label=version,...', got {entry!r}")
        for pair in (p.strip() for p in pairs.split(",") if p.strip()):
            label, eq, version = pair.partition("=")
            if not eq or not label.strip() or not version.strip():
                raise ValueError(f"expected label=version, got {pair!r} in {entry!r}")
            if label.strip().isdigit():
                raise ValueError(f"a label must not be a number (it would read as a version): {label.strip()!r}")
            labels.setdefault(name.strip(), {})[label.strip()] = version.strip()
    return labels


def resolve(served: Sequence[Version], labels: Mapping[str, str], wanted: str | None) -> Version | None:
    """The served version a request means: ``wanted`` as a number, a tag or a label; none = the
    ``stable`` label if it names a served version, else the newest. None when nothing matches."""
    if not served:
        return None
    if wanted:
        target = labels.get(wanted, wanted)
        return next((v for v in served if matches(v, [target])), None)
    stable = labels.get(STABLE)
    if stable is not None:
        chosen = next((v for v in served if matches(v, [stable])), None)
        if chosen is not None:
            return chosen
    return max(served, key=lambda v: (v.version_number, v.version))
