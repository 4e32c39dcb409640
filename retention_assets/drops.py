"""Fingerprints of the CSV drops in the data folder: what the sensor compares between ticks."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from .core.loading import source_files


def fingerprint(data_dir: Path, source: str, settle_seconds: float, now: float) -> str | None:
    """Name, size and mtime of every drop of `source`, hashed; None while a drop is still
    being written (modified less than settle_seconds ago) or when there is none."""
    digest = hashlib.sha256()
    files = source_files(data_dir, source)
    for path in files:
        stat = path.stat()
        if now - stat.st_mtime < settle_seconds:
            return None
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16] if files else None


def changed_sources(
    data_dir: Path,
    sources: list[str],
    previous: dict[str, str],
    settle_seconds: float,
    now: float | None = None,
) -> dict[str, str]:
    """The settled sources whose fingerprint differs from `previous`, with the new fingerprint."""
    now = time.time() if now is None else now
    changed = {}
    for source in sources:
        current = fingerprint(data_dir, source, settle_seconds, now)
        if current is not None and previous.get(source) != current:
            changed[source] = current
    return changed
