"""Settings every worker of one server shares at run time: a JSON document in the state directory.

Workers are separate processes. A change (Triton's logging and trace extensions) is written by the
worker that took the call, under a lock file and atomically (temp file + rename), and applied there at
once; every other worker notices the new file within :data:`POLL_S` (one ``stat`` per document on a
daemon thread, never on the request path) and applies it too. A document written by another server
(an older run with the same ``SERVING_STATE_DIR``) is ignored: run-time settings start from the
start-up settings, as Triton's do.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger("serving.shared")

POLL_S = 0.25
Document = dict[str, Any]


def server_id() -> int:
    """What every worker of one server agrees on: BentoML's arbiter, their parent process."""
    return os.getppid()


class SharedDocument:
    """One JSON document of this server's workers: read it, change it under the lock, hear of changes."""

    def __init__(self, path: Path, on_change: Callable[[Document | None], None]) -> None:
        self.path = path
        self.on_change = on_change  # the document as it is now (None: none written by this server yet)
        self.server = server_id()
        self.stamp: tuple[int, int, int] | None = None
        self.lock = threading.Lock()  # one apply at a time: the watcher's and an edit's
        self.refresh(force=True)
        _WATCHER.watch(self)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def read(self) -> Document | None:
        """The document as written by a worker of this server, or None."""
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("server") != self.server:
            return None
        return data

    @contextlib.contextmanager
    def edit(self) -> Iterator[Document]:
        """The document (``{}`` when there is none yet) to change in place, under the lock; written and
        applied here when the block ends without an error (an error leaves it as it was)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            before = self.read()
            doc: Document = json.loads(json.dumps(before)) if before is not None else {}
            yield doc
            if doc != before:
                doc["server"] = self.server
                tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(doc, sort_keys=True))
                os.replace(tmp, self.path)
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        """Apply the document if it changed since this worker last applied it (or ``force``)."""
        with self.lock:
            stamp = self._stat()
            if stamp == self.stamp and not force:
                return
            self.stamp = stamp
            self.on_change(self.read() if stamp is not None else None)


class _Watcher:
    """One daemon thread per process that refreshes every live :class:`SharedDocument`."""

    def __init__(self) -> None:
        self.documents: weakref.WeakSet[SharedDocument] = weakref.WeakSet()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def watch(self, document: SharedDocument) -> None:
        with self.lock:
            self.documents.add(document)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.run, name="shared-settings", daemon=True)
                self.thread.start()

    def run(self) -> None:
        stop = threading.Event()
        while not stop.wait(POLL_S):
            with self.lock:
                documents = list(self.documents)
            for document in documents:
                try:
                    document.refresh()
                except Exception:  # a bad apply must not stop the others from being kept up to date
                    logger.exception("applying %s failed", document.path.name)


_WATCHER = _Watcher()
