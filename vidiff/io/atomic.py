"""Crash-safe file writes: a temporary name beside the file, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write `path` through `write(file)` so that a reader, or a crash, never sees half a file.

    The temporary file is opened normally (not with mkstemp's 0600), so the result gets the
    permissions any new file of the user's gets.
    """
    path = Path(path)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(temp, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    # the rename itself must reach the disk before anything relies on it
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
