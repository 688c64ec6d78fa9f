"""System shared memory (Triton's ``docs/protocol/extension_shared_memory.md``), for every worker at once.

A client creates a POSIX shared memory object (``/dev/shm/<key>``), registers a region of it under a
name (key, offset, byte size), and then names that region, an offset in it and a byte size instead of
sending an input's bytes, or to have an output written there instead of sent back. Registrations are
files in the server's state directory (``shm/``), so a region registered through one worker is known
to all; each worker maps a region on first use and drops the mapping when the registration goes.

Every access is checked against the registration and the object's real size: nothing is read or
written outside a region, and a bad name, key, offset or size is a 400 (an unknown region a 404).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import re
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from contract.errors import InvalidInput, NotFound

SHM_ROOT = Path("/dev/shm")
MAX_REGIONS = 256
_KEY = re.compile(r"^/?[A-Za-z0-9_.-]{1,200}$")


@dataclass(frozen=True)
class Region:
    name: str
    key: str
    offset: int
    byte_size: int


def _count(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInput(f"{what} must be a non-negative integer, got {str(value)[:50]}")
    return value


class SystemSharedMemory:
    """The server's registered regions (files under ``state_dir/shm``) and this worker's mappings of them."""

    def __init__(self, state_dir: Path, root: Path = SHM_ROOT) -> None:
        self.dir = state_dir / "shm"
        self.root = root
        self._maps: dict[str, tuple[Region, mmap.mmap]] = {}
        self._known: dict[str, tuple[tuple[int, int], Region]] = {}  # name -> (file stamp, its registration)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ registrations

    def _file(self, name: str) -> Path:
        return self.dir / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.json"

    def _object(self, key: str) -> Path:
        if key in ("", "/") or not _KEY.match(key) or key.strip("/") in (".", ".."):
            raise InvalidInput(f"shared memory key {key[:100]!r} is not a POSIX shared memory name (like '/input0')")
        return self.root / key.lstrip("/")

    def register(self, name: str, key: str, offset: object, byte_size: object) -> Region:
        if not name or len(name) > 200:
            raise InvalidInput("a shared memory region needs a name of 1 to 200 characters")
        region = Region(name, key, _count(offset, "offset"), _count(byte_size, "byte_size"))
        path = self._object(key)
        try:
            size = path.stat().st_size
        except OSError:
            raise InvalidInput(f"unable to open shared memory key {key[:100]!r}: no such object in {self.root}") from None
        if region.offset + region.byte_size > size:
            raise InvalidInput(
                f"region {name[:100]!r}: offset {region.offset} + byte_size {region.byte_size} is past the end of {key!r} ({size} bytes)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        target = self._file(name)
        if target.exists():
            raise InvalidInput(f"shared memory region {name[:100]!r} is already registered; unregister it first")
        if len(list(self.dir.glob("*.json"))) >= MAX_REGIONS:
            raise InvalidInput(f"{MAX_REGIONS} shared memory regions are registered (the most); unregister some first")
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(region)))
        os.replace(tmp, target)
        return region

    def unregister(self, name: str | None = None) -> None:
        """Forget one region (an unknown name is no error, as in Triton) or, without a name, every region."""
        paths = [self._file(name)] if name else list(self.dir.glob("*.json"))
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with self._lock:
            for region_name in [n for n in self._maps if not name or n == name]:
                self._maps.pop(region_name)[1].close()

    def status(self, name: str | None = None) -> list[Region]:
        if name:
            return [self.region(name)]
        regions = []
        for path in sorted(self.dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, TypeError):
                regions.append(Region(**json.loads(path.read_text())))
        return sorted(regions, key=lambda r: r.name)

    def region(self, name: str) -> Region:
        """The registration as it is now (another worker may have changed it): one stat when unchanged."""
        path = self._file(name)
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns)
            known = self._known.get(name)
            if known is not None and known[0] == stamp:
                return known[1]
            region = Region(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise NotFound(f"no shared memory region {name[:100]!r} is registered") from None
        except (OSError, ValueError, TypeError):
            raise NotFound(f"shared memory region {name[:100]!r} cannot be read; register it again") from None
        if len(self._known) >= MAX_REGIONS:
            self._known.clear()
        self._known[name] = (stamp, region)
        return region

    # ------------------------------------------------------------ access

    def _mapping(self, name: str) -> tuple[Region, mmap.mmap]:
        region = self.region(name)  # the registration as it is now (another worker may have changed it)
        with self._lock:
            held = self._maps.get(name)
            if held is not None and held[0] == region:
                return held
            if held is not None:
                held[1].close()
            try:
                fd = os.open(self._object(region.key), os.O_RDWR)
            except OSError:
                raise InvalidInput(f"shared memory region {name[:100]!r}: key {region.key!r} no longer exists") from None
            try:
                size = os.fstat(fd).st_size
                if region.offset + region.byte_size > size:
                    raise InvalidInput(f"shared memory region {name[:100]!r}: {region.key!r} shrank to {size} bytes")
                mapped = mmap.mmap(fd, size)
            finally:
                os.close(fd)
            self._maps[name] = (region, mapped)
            return region, mapped

    def _span(self, region: Region, offset: object, byte_size: object, what: str) -> tuple[int, int]:
        start, size = _count(offset, f"{what}: shared_memory_offset"), _count(byte_size, f"{what}: shared_memory_byte_size")
        if start + size > region.byte_size:
            raise InvalidInput(
                f"{what}: offset {start} + byte size {size} is past the end of region {region.name!r} ({region.byte_size} bytes)"
            )
        return region.offset + start, size

    def read(self, name: str, offset: object, byte_size: object, what: str) -> bytes:
        """A copy of ``byte_size`` bytes at ``offset`` in the region (the client may reuse it at once)."""
        region, mapped = self._mapping(name)
        start, size = self._span(region, offset, byte_size, what)
        return mapped[start : start + size]

    def write(self, name: str, offset: object, byte_size: object, data: bytes, what: str) -> None:
        """``data`` at ``offset`` in the region, if it fits in the ``byte_size`` the request gave."""
        region, mapped = self._mapping(name)
        start, size = self._span(region, offset, byte_size, what)
        if len(data) > size:
            raise InvalidInput(f"{what} is {len(data)} bytes; its shared memory byte size is only {size}")
        mapped[start : start + len(data)] = data
