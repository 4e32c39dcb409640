"""What a folder of drops asks for, compared with what the database says is loaded: the one
answer the sensor, the command line and `loaded_files` all act on."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ..core.sources import SOURCES
from ..storage.slices import LoadedFile
from .loading import source_files

_REFERENCED = {
    col.references for spec in SOURCES.values() for col in spec.columns if col.references
}


@dataclass(frozen=True)
class DropPlan:
    load: dict[str, list[Path]] = field(default_factory=dict)  # source -> new or changed files
    remove: list[LoadedFile] = field(default_factory=list)  # loaded, no longer in the folder
    unsettled: list[Path] = field(default_factory=list)  # modified less than settle_seconds ago

    @property
    def empty(self) -> bool:
        return not (self.load or self.remove)

    def first_stage(self) -> DropPlan:
        """The loads to run before the others: files of sources other sources reference
        (customers, packages), so references resolve as rows arrive instead of being held and
        freed again, which costs work in proportion to the rows held."""
        first = {name: files for name, files in self.load.items() if name in _REFERENCED}
        return DropPlan(load=first or self.load, remove=self.remove, unsettled=self.unsettled)

    def describe(self) -> str:
        loads = sum(len(files) for files in self.load.values())
        text = f"{loads} file(s) to load, {len(self.remove)} to remove"
        if self.unsettled:
            names = ", ".join(p.name for p in self.unsettled)
            text += f"; still being written (left for later): {names}"
        return text


def fingerprint(path: Path) -> tuple[int, int]:
    """(size, modification time in ns): what tells a changed drop from the one loaded."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def is_loaded(entry: LoadedFile | None, path: Path) -> bool:
    return entry is not None and (entry.size, entry.mtime_ns) == fingerprint(path)


def plan_drops(
    folder: Path,
    loaded: dict[tuple[str, str], LoadedFile],
    settle_seconds: float = 0.0,
    now: float | None = None,
    rebuild: bool = False,
) -> DropPlan:
    """New and changed files to load (in file-name order), loaded files to remove. A file
    modified less than settle_seconds ago is left alone: it may still be being written."""
    now = time.time() if now is None else now
    plan = DropPlan()
    present: set[tuple[str, str]] = set()
    for name in SOURCES:
        for path in source_files(folder, name):
            present.add((name, path.name))
            if now - path.stat().st_mtime < settle_seconds:
                plan.unsettled.append(path)
            elif rebuild or not is_loaded(loaded.get((name, path.name)), path):
                plan.load.setdefault(name, []).append(path)
    plan.remove.extend(entry for key, entry in sorted(loaded.items()) if key not in present)
    return plan
