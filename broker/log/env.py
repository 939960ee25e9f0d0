"""The LMDB environment of one data directory.

One environment per broker data directory, opened by one process at a time
(an exclusive ``flock`` on ``shardline.lock`` refuses a second one with a clear
message). Durable: LMDB's default sync and metasync, no ``writemap`` (slower
with sync). The map starts at ``map_size`` and doubles whenever a commit finds
it full, up to ``max_map_size``; past the cap, or on a full disk, writes fail
with ``StorageFullError`` and nothing of the failed commit is kept.

``set_mapsize`` may only run while this process holds no transaction, so every
read transaction is taken under ``reading()``, a lock that the writer takes
too while it grows the map. Read transactions are short: they copy what they
need and end before the caller does anything else.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ..errors import DataDirectoryLockedError, StorageFullError

DATABASES = (
    "meta",
    "streams",
    "batches",
    "tails",
    "checkpoints",
    "leases",
    "consumers",
    "producers",
    "mappings",
)


@dataclass(frozen=True, slots=True)
class EnvConfig:
    map_size: int = 256 << 20
    max_map_size: int = 64 << 30
    max_readers: int = 512
    sync: bool = True


class LogEnvironment:
    """The open LMDB environment, its named databases and the directory lock."""

    def __init__(self, path: str | os.PathLike[str], config: EnvConfig = EnvConfig()) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.config = config
        self._lock_file = open(self.path / "shardline.lock", "a+")  # noqa: SIM115
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise DataDirectoryLockedError(
                f"data directory {self.path} is in use by another shardline process"
            ) from None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        self._map_lock = threading.Lock()
        try:
            data_file = self.path / "data.mdb"
            existing = data_file.stat().st_size if data_file.exists() else 0
            self.map_size = max(config.map_size, existing)
            self.env = lmdb.open(
                str(self.path),
                map_size=self.map_size,
                max_dbs=len(DATABASES),
                max_readers=config.max_readers,
                sync=config.sync,
                metasync=config.sync,
                writemap=False,
                readahead=False,
                meminit=False,
            )
            self.dbs: dict[str, Any] = {name: self.env.open_db(name.encode()) for name in DATABASES}
        except Exception:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
        self._lock_file.close()

    def close(self) -> None:
        with self._map_lock:
            self.env.close()
        self._release_lock()

    @contextlib.contextmanager
    def reading(self, *, buffers: bool = False) -> Iterator[Any]:
        """A short read transaction; never hold it across an ``await``.

        With ``buffers`` values are memoryviews into the map, valid only inside
        the transaction: copy what must outlive it.
        """
        with self._map_lock, self.env.begin(buffers=buffers) as txn:  # type: ignore[call-overload]
            yield txn

    def grow(self) -> None:
        """Double the map size, up to the cap; ``StorageFullError`` at the cap."""
        if self.map_size >= self.config.max_map_size:
            raise StorageFullError(
                f"the log reached its maximum map size of {self.config.max_map_size} bytes "
                f"({self.path}); raise max_map_size or delete data"
            )
        new_size = min(self.map_size * 2, self.config.max_map_size)
        with self._map_lock:
            self.env.set_mapsize(new_size)
        self.map_size = new_size

    def stat(self) -> dict[str, Any]:
        info = self.env.info()
        return {"map_size": info["map_size"], "last_txnid": info["last_txnid"]}


#: How the OS says "no room": LMDB passes these on as text, without an errno attribute.
_NO_ROOM = ("No space left", "File too large", "Disk quota exceeded")


def storage_error(exc: lmdb.Error, path: Path) -> StorageFullError | None:
    """The ``StorageFullError`` for an LMDB write failure that means "no room", else None.

    LMDB reports a short write (what a full disk or a file size limit usually
    gives) as ``EIO``, so an I/O error while committing counts as one too, with
    a message that says so.
    """
    text = str(exc)
    if isinstance(exc, lmdb.DiskError) or getattr(exc, "errno", None) == errno.ENOSPC:
        return StorageFullError(f"the disk holding the log ({path}) is full: {text}")
    if any(marker in text for marker in _NO_ROOM):
        return StorageFullError(f"the log ({path}) has no room to write: {text}")
    if "Input/output error" in text:
        return StorageFullError(
            f"the log ({path}) could not write its commit ({text}); LMDB reports a short "
            "write this way, most often because the disk is full"
        )
    return None
