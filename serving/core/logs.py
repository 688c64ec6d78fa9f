"""Triton's logging extension (``docs/protocol/extension_logging.md``) over the service's Python logging.

Settings, as Triton names them: ``log_info``, ``log_warning``, ``log_error`` (whether the service's own
``serving.*`` loggers write records of that level), ``log_verbose_level`` (0 = no debug records; 1 or
more = ``DEBUG`` records too: Python has one debug level), ``log_format`` (``default``: the server's
own line format; ``ISO8601``: Triton's ``2024-05-20T20:03:26Z I 3415 file.py:12] message``, for every
line of the worker's log) and ``log_file`` (always ``""``: the log goes to the server's output; like
Triton, a location cannot be set over the network, so anything but ``""`` is a 400).

They start from SERVING_LOG_LEVEL and are shared by every worker (:mod:`serving.core.shared`, file
``logging.json`` in the state directory). A change names only the settings it changes; a ``null``
leaves one as it is. A wrong type, an unknown name, a negative verbose level or an unknown format is
a 400 / INVALID_ARGUMENT that says which.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from contract.errors import InvalidInput

from .shared import Document, SharedDocument

logger = logging.getLogger("serving.logs")

FILE = "logging.json"
FORMATS = ("default", "ISO8601")
SWITCHES = ("log_info", "log_warning", "log_error")
KEYS = ("log_file", *SWITCHES, "log_verbose_level", "log_format")
ROOT_LOGGER = "serving"
UINT32_MAX = 2**32 - 1


def defaults(level: str) -> dict[str, Any]:
    """The settings a SERVING_LOG_LEVEL means (DEBUG, INFO, WARNING, ERROR or CRITICAL)."""
    rank = logging.getLevelName(level.upper())
    rank = rank if isinstance(rank, int) else logging.INFO
    return {
        "log_file": "",
        "log_info": rank <= logging.INFO,
        "log_warning": rank <= logging.WARNING,
        "log_error": rank <= logging.ERROR,
        "log_verbose_level": 1 if rank <= logging.DEBUG else 0,
        "log_format": "default",
    }


def validate(changes: Any) -> dict[str, Any]:
    """The settings a request changes (``null`` values dropped), or InvalidInput saying what is wrong."""
    if not isinstance(changes, dict):
        raise InvalidInput(f'log settings are a JSON object of settings, such as {{"log_verbose_level": 1}}; got {_shown(changes)}')
    unknown = [str(k)[:60] for k in changes if k not in KEYS]
    if unknown:
        raise InvalidInput(f"unknown log setting(s) {unknown}; the settings are {', '.join(KEYS)}")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if key in SWITCHES:
            if not isinstance(value, bool):
                raise InvalidInput(f"{key} must be true or false, got {_shown(value)}")
        elif key == "log_verbose_level":
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT32_MAX:
                raise InvalidInput(f"log_verbose_level must be an integer >= 0 (0 = no verbose logging), got {_shown(value)}")
        elif key == "log_format":
            if value not in FORMATS:
                raise InvalidInput(f"log_format must be 'default' or 'ISO8601', got {_shown(value)}")
        elif value != "":  # log_file
            raise InvalidInput(
                'log_file cannot be set over the network (as in Triton): the log goes to the server\'s output; send "" or leave it out'
            )
        out[key] = value
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class LogSettings:
    """This server's log settings (shared by its workers) and their application to Python logging."""

    def __init__(self, state_dir: Path, level: str) -> None:
        self.defaults = defaults(level)
        self.applied: dict[str, Any] | None = None  # None: the start-up level, as the host set it
        self.document = SharedDocument(state_dir / FILE, self.apply_document)

    def current(self) -> dict[str, Any]:
        """Every setting, as Triton's ``GET /v2/logging`` answers (whichever worker wrote the last change)."""
        return {**self.defaults, **((self.document.read() or {}).get("settings") or {})}

    def update(self, changes: Any) -> dict[str, Any]:
        """Apply ``changes`` (validated first) on every worker; every setting as it is now."""
        valid = validate(changes)
        with self.document.edit() as doc:
            doc["settings"] = {**self.defaults, **(doc.get("settings") or {}), **valid}
        now = self.current()
        logger.info("log settings: %s", ", ".join(f"{k}={v}" for k, v in now.items() if k != "log_file"))
        return now

    def apply_document(self, doc: Document | None) -> None:
        if doc is None or not isinstance(doc.get("settings"), dict):
            return  # nothing changed at run time: the host's start-up configuration stands
        settings = {**self.defaults, **doc["settings"]}
        if settings != self.applied:
            apply(settings)
            self.applied = settings


# ---------------------------------------------------------------- Python logging


class Switches(logging.Filter):
    """Drops the ``serving.*`` records of a level that is switched off (Triton's switches are
    independent: info on with warnings off is a valid setting that one logger level cannot say)."""

    def __init__(self) -> None:
        super().__init__()
        self.off: frozenset[int] = frozenset()  # the levels (10, 20, 30, 40) that are off

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.off or not (record.name == ROOT_LOGGER or record.name.startswith(ROOT_LOGGER + ".")):
            return True
        return min(record.levelno // 10 * 10, logging.ERROR) not in self.off


class ISO8601(logging.Formatter):
    """Triton's ISO8601 line: ``2024-05-20T20:03:26Z I 3415 model.py:12] message`` (UTC)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelletter)s %(process)d %(filename)s:%(lineno)d] %(message)s", "%Y-%m-%dT%H:%M:%SZ")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))

    def format(self, record: logging.LogRecord) -> str:
        record.levelletter = record.levelname[:1]
        return super().format(record)


SWITCHES_FILTER = Switches()
ISO_FORMATTER = ISO8601()
_original_formatters: dict[int, logging.Formatter | None] = {}  # handler id -> its formatter before ISO8601


def _handlers() -> list[logging.Handler]:
    """Every handler of this process's loggers (the log's lines go through these)."""
    found = list(logging.getLogger().handlers)
    for candidate in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(candidate, logging.Logger):
            found += [h for h in candidate.handlers if h not in found]
    return found


def apply(settings: dict[str, Any]) -> None:
    """Make this process's logging say what ``settings`` say."""
    levels = {logging.INFO: settings["log_info"], logging.WARNING: settings["log_warning"], logging.ERROR: settings["log_error"]}
    levels[logging.DEBUG] = settings["log_verbose_level"] > 0
    SWITCHES_FILTER.off = frozenset(level for level, on in levels.items() if not on)
    lowest = min((level for level, on in levels.items() if on), default=logging.CRITICAL + 10)
    logging.getLogger(ROOT_LOGGER).setLevel(lowest)  # records below it are never even made
    iso = settings["log_format"] == "ISO8601"
    for handler in _handlers():
        if SWITCHES_FILTER not in handler.filters:
            handler.addFilter(SWITCHES_FILTER)
        key = id(handler)
        if iso and key not in _original_formatters:
            _original_formatters[key] = handler.formatter
            handler.setFormatter(ISO_FORMATTER)
        elif not iso and key in _original_formatters:
            handler.setFormatter(_original_formatters.pop(key))
