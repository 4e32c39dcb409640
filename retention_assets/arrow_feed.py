"""A Python file handed to arrow's CSV reader, and the wait until arrow has let go of it.

Arrow frees what it holds of Python (the file object, each block it read) on its own threads,
taking the GIL to do so. One still doing that when the interpreter exits aborts the process
("terminate called without an active exception"): a failed load that exits at once used to,
about one run in seven with both cores busy. So everything arrow is given is tracked, and
the reader's owner waits for it back before it goes on.
"""

from __future__ import annotations

import io
import time
import weakref
from typing import BinaryIO, TypeVar

_T = TypeVar("_T")


class ArrowFeed:
    """Lends one file to arrow: `file()` is what arrow reads, `lend(obj)` tracks another object
    given to it (a callback), `wait_returned()` blocks until arrow has freed all of them and
    every block it read (or `timeout` seconds have passed)."""

    def __init__(self, source: BinaryIO) -> None:
        self.source = source
        self.lent: set[weakref.ref] = set()

    def file(self) -> _Feed:
        """The file object for arrow; keep no reference to it, or the wait cannot end."""
        return self.lend(_Feed(self))

    def wait_returned(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.lent and time.monotonic() < deadline:
            time.sleep(0.001)

    def lend(self, obj: _T) -> _T:
        self.lent.add(weakref.ref(obj, self.lent.discard))
        return obj


class _Feed(io.RawIOBase):
    def __init__(self, loan: ArrowFeed) -> None:
        super().__init__()
        self.loan = loan

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> memoryview:  # type: ignore[override]
        return self.loan.lend(memoryview(self.loan.source.read(size)))
