"""The BentoML model store as training and serving read it: one :class:`Stored` record per stored version.

``list_store`` imports bentoml when called, so this module (and ``contract``) imports without it.
The store is the one at ``$BENTOML_HOME`` (read by bentoml when it is first imported).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.artifacts import read_signature, version_number
from contract.errors import ModelNotFound


@dataclass(frozen=True)
class Stored:
    """One version in the model store."""

    store_name: str
    version: str
    created: float
    path: Path
    metadata: dict[str, Any]

    @property
    def version_number(self) -> int:
        return version_number(self.created)

    @property
    def key(self) -> tuple[str, str]:
        return (self.store_name, self.version)

    @property
    def tag(self) -> str:
        return f"{self.store_name}:{self.version}"

    def signature(self) -> dict[str, Any]:
        """Its ``signature.json``, checked to name this model (ValueError or OSError otherwise)."""
        return read_signature(self.path, self.store_name)


def list_store(tags: Sequence[str] = ()) -> list[Stored]:
    """Every stored version, or just ``tags`` (a name alone means its latest version).

    Raises ModelNotFound for a tag the store does not hold.
    """
    import bentoml

    try:
        models = [bentoml.models.get(tag) for tag in tags] if tags else bentoml.models.list()
    except bentoml.exceptions.NotFound as e:
        raise ModelNotFound(f"{e}; `bentoml models list` shows what the store at $BENTOML_HOME holds") from e
    return [Stored(m.tag.name, str(m.tag.version), m.creation_time.timestamp(), Path(m.path), dict(m.info.metadata)) for m in models]


def newest(stored: Iterable[Stored]) -> list[Stored]:
    """The newest version of each stored model, by store name."""
    latest: dict[str, Stored] = {}
    for s in stored:
        if s.store_name not in latest or s.created > latest[s.store_name].created:
            latest[s.store_name] = s
    return [latest[name] for name in sorted(latest)]
