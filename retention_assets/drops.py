"""Fingerprints of the CSV drops in the data folder: what the sensor compares between ticks."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

from .core.loading import source_files


@dataclass(frozen=True)
class SourceState:
    fingerprint: str | None  # None: a file is still being written
    files: list[str]


def source_state(data_dir: Path, source: str, settle_seconds: float, now: float | None = None):
    """Name, size and mtime of every settled drop of `source`, hashed into one fingerprint."""
    now = time.time() if now is None else now
    digest = hashlib.sha256()
    names = []
    for path in source_files(data_dir, source):
        stat = path.stat()
        if now - stat.st_mtime < settle_seconds:
            return SourceState(None, names)
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        names.append(path.name)
    return SourceState(digest.hexdigest()[:16] if names else None, names)


def changed_sources(
    data_dir: Path,
    sources: list[str],
    previous: dict[str, str],
    settle_seconds: float,
    now: float | None = None,
) -> dict[str, str]:
    """The settled sources whose fingerprint differs from `previous`, with the new fingerprint."""
    changed = {}
    for source in sources:
        state = source_state(data_dir, source, settle_seconds, now)
        if state.fingerprint is not None and previous.get(source) != state.fingerprint:
            changed[source] = state.fingerprint
    return changed
