"""A transient status line on a terminal: shown while something slow and silent happens (loading a
model), erased when it ends or fails, so that what follows (the progress bar, or an error's one
line) starts on a clean line. Piped or redirected stderr never sees it."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator, TextIO

ERASE_LINE = "\r\033[K"  # back to the line's start, then clear to its end


@contextmanager
def status_line(text: str, enabled: bool = True, stream: TextIO | None = None) -> Iterator[None]:
    """Show "vidiff: TEXT" on `stream` (stderr by default) while the block runs, if it is a terminal."""
    stream = stream or sys.stderr  # the stderr of the moment: a test runner may have swapped it
    shown = enabled and stream.isatty()
    if shown:
        stream.write(f"vidiff: {text}")
        stream.flush()
    try:
        yield
    finally:
        if shown:
            stream.write(ERASE_LINE)
            stream.flush()
