"""A mapping whose values live pickled in an unnamed temporary file, so that holding them costs memory
per key only: a panel's per-series records (:class:`pyanode.forecast.panel.SeriesRecord`) are kept this
way, and a fitted panel's memory does not grow with its series' data.

Each value is pickled once, appended to the file, and read back (a fresh object) when looked up; the
memory kept is the key, its slot and two integers. The file is made with :func:`tempfile.TemporaryFile`
(deleted by the system when closed, and at once where it can be); where no temporary file can be made,
the bytes are kept in memory instead. Reads use positional I/O (``os.pread``) where the system has it, so
a forked process reading the same file does not move the parent's file position.
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["RecordStore"]


class RecordStore(Mapping[str, Any]):
    """``{key: value}`` with each value pickled into a temporary file and unpickled on each lookup.

    Values are immutable once stored (a lookup returns a new copy). :meth:`put` adds a value,
    :meth:`put_pickled` one already pickled (as a worker process hands it back); :meth:`arrange` orders
    and filters the keys without touching the file. Pickling a store copies its values into the pickle."""

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        self._slots: dict[str, int] = {}  # key -> slot; iteration follows this dict's order
        self._offsets, self._sizes = array("q"), array("q")
        self._lock = threading.Lock()
        try:
            self._file: Any = tempfile.TemporaryFile(prefix="pyanode-records-")
        except OSError:  # no writable temporary directory: keep the bytes in memory
            self._file = io.BytesIO()
        self._end = 0
        for key, value in items:
            self.put(key, value)

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing what was there)."""
        self.put_pickled(key, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))

    def put_pickled(self, key: str, blob: bytes) -> None:
        """Store the value ``pickle.loads(blob)`` under ``key`` without unpickling it here."""
        with self._lock:
            self._file.seek(self._end)
            self._file.write(blob)
            self._offsets.append(self._end)
            self._sizes.append(len(blob))
            self._end += len(blob)
            self._slots.pop(key, None)  # a replaced key moves to the end, as in a dict rebuilt in order
            self._slots[key] = len(self._offsets) - 1

    def arrange(self, keys: Iterable[str]) -> None:
        """Keep only ``keys``, in that order (each must be stored)."""
        self._slots = {key: self._slots[key] for key in keys}

    def pop_key(self, key: str) -> None:
        """Forget ``key`` (its bytes stay in the file until the store is closed)."""
        del self._slots[key]

    def _blob(self, slot: int) -> bytes:
        offset, size = self._offsets[slot], self._sizes[slot]
        with self._lock:
            if hasattr(os, "pread") and not isinstance(self._file, io.BytesIO):
                self._file.flush()
                return os.pread(self._file.fileno(), size, offset)
            self._file.seek(offset)
            return self._file.read(size)

    def __getitem__(self, key: str) -> Any:
        return pickle.loads(self._blob(self._slots[key]))

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def close(self) -> None:
        """Delete the file now (rather than when the store is collected)."""
        self._file.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"items": [(key, self._blob(slot)) for key, slot in self._slots.items()]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()
        for key, blob in state["items"]:
            self.put_pickled(key, blob)

    def __repr__(self) -> str:
        return f"RecordStore({len(self)} values, {self._end} bytes on file)"
