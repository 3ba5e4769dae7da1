"""The work folder beside OUTPUT that makes a run resumable: each shot's finished segments and the state after them.

OUTPUT.vidiff/
  manifest.json              the run's fingerprint
  shot-000000/               one folder per shot, named by its first frame
    manifest.json            the shot's segments finished so far with their frame counts, and where it ended once done
    segment-00000.mp4        encoded in OUTPUT's codec (.mov, .webm, .mkv as it needs), video only; joined without
                             re-encoding at the end (a GIF, picture or sequence's are lossless FFV1, .mkv)
    state-00000.pt           what the next frame needs after that segment (temporal state, attention memory)
    pending-000048.png       finished frames of the unfinished segment, lossless
    pending-state.pt         the state after the last pending frame

A shot starts from an empty state, so each shot's folder holds all that finishing it needs: a shot
can be finished, resumed or handed to another machine on its own. Every file is written to a
temporary name, fsynced and renamed, and a manifest last: after a crash, kill -9 or power loss each
folder describes a consistent prefix of its shot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import VidiffError
from ..settings.config import fingerprint_settings
from .atomic import write_atomic
from .reader import input_identity

# Frames per encoded segment: a segment is encoded whole, so the video is the same however often
# the run was interrupted; the frames of the unfinished one wait as lossless PNGs.
SEGMENT_FRAMES = 48
# The work folder's layout: a folder written by another layout is stale, not resumable.
LAYOUT = "shots-1"
MANIFEST = "manifest.json"
PENDING_STATE = "pending-state.pt"


def fingerprint(config, input_path: str | os.PathLike) -> str:
    """What the finished work depends on: the settings, the input's identity, and vidiff's version."""
    settings = fingerprint_settings(config)
    identity = {"path": os.path.abspath(input_path), **input_identity(input_path)}
    text = json.dumps(
        {"settings": settings, "input": identity, "version": __version__, "segment": SEGMENT_FRAMES, "layout": LAYOUT},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def segment_bounds(frame: int, shot_first: int, shot_end: int | None) -> tuple[int, int]:
    """The frames [start, end) of the segment of the shot beginning at `shot_first` that holds `frame`;
    segments are laid out from the shot's first frame (`shot_end` None: the shot runs to the input's end)."""
    start = shot_first + (frame - shot_first) // SEGMENT_FRAMES * SEGMENT_FRAMES
    end = start + SEGMENT_FRAMES
    return start, end if shot_end is None else min(end, shot_end)


@dataclass
class Checkpoint:
    """Where a shot picks up: the next frame to stylise, the state before it, finished frames not yet encoded."""

    next_frame: int
    state: dict[str, Any] | None = None
    pending: list[Path] = field(default_factory=list)


class WorkFolder:
    """Open (or start) the work folder for OUTPUT; stale work from other settings or input is discarded."""

    def __init__(self, output: str | os.PathLike, fingerprint: str, restart: bool = False):
        self.path = Path(f"{os.fspath(output)}.vidiff")
        self.fingerprint = fingerprint
        found = None if restart else self._read_fingerprint()
        self.stale = found is not None and found != fingerprint
        if found != fingerprint:
            _fresh_folder(self.path)
            # the manifest first: shots in a folder without one would never be trusted
            payload = json.dumps({"fingerprint": fingerprint}).encode()
            write_atomic(self.path / MANIFEST, lambda file: file.write(payload))

    def _read_fingerprint(self) -> str | None:
        try:
            return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def shot(self, first: int) -> "ShotFolder":
        """The folder of the shot that begins at frame `first` (made if new)."""
        return ShotFolder(self.path / f"shot-{first:06d}", first)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _fresh_folder(path: Path) -> None:
    """An empty folder at `path`, whatever was there."""
    if path.exists():
        shutil.rmtree(path)
    try:
        # parents: a sequence's folder (frames/ of frames/out_%05d.png) is made with its work folder
        path.mkdir(parents=True)
    except OSError as err:
        raise VidiffError(f"can't create the work folder {path}: {err.strerror}") from None


class ShotFolder:
    """One shot's finished segments, the state after the last, and its unfinished segment's frames."""

    def __init__(self, path: Path, first: int):
        self.path, self.first = path, first
        self.segments: list[dict[str, Any]] = []  # [{"file": ..., "frames": n}]
        self.state: str | None = None  # the state after the last segment's last frame
        self.finished_at: int | None = None  # the frame after the shot's last, once it is done
        self._made = self._read_manifest()
        if not self._made and self.path.exists():  # cut short before its manifest: started afresh
            shutil.rmtree(self.path)

    def _make(self) -> None:
        """The folder and its manifest, made by the first write: the shots a run hasn't reached cost nothing."""
        if not self._made:
            _fresh_folder(self.path)
            self._write_manifest()
            self._made = True

    def _read_manifest(self) -> bool:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            segments, state, finished_at = data["segments"], data["state"], data["finished_at"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        files = [segment["file"] for segment in segments] + ([state] if state else [])
        if not all((self.path / name).is_file() for name in files):
            return False
        self.segments, self.state, self.finished_at = segments, state, finished_at
        return True

    @property
    def frames_done(self) -> int:
        return sum(segment["frames"] for segment in self.segments)

    @property
    def segment_files(self) -> list[Path]:
        return [self.path / segment["file"] for segment in self.segments]

    def next_segment(self, suffix: str = ".mp4") -> Path:
        """Where the next segment is encoded (`suffix`: its container's); it counts only once committed."""
        self._make()
        return self.path / f"segment-{len(self.segments):05d}{suffix}"

    def pending_frame(self, index: int) -> Path:
        return self.path / f"pending-{index:06d}.png"

    def checkpoint(self, needs_memory: bool) -> Checkpoint:
        """The furthest point the shot can resume from consistently."""
        done = self.first + self.frames_done
        committed = Checkpoint(done, self._load(self.state) if self.state else None)
        pending_state = self._load(PENDING_STATE) if (self.path / PENDING_STATE).is_file() else None
        if pending_state is None or (needs_memory and "memory" not in pending_state):
            return committed
        last = int(pending_state.pop("frame"))
        pending = [self.pending_frame(index) for index in range(done, last + 1)]
        if last < done or not all(path.is_file() for path in pending):
            return committed
        return Checkpoint(last + 1, pending_state, pending)

    def _load(self, name: str) -> dict[str, Any] | None:
        try:
            return torch.load(self.path / name, map_location="cpu", weights_only=True)
        except Exception:  # a state cut short by a crash: resume from an earlier one
            return None

    def save_frame(self, index: int, png: bytes) -> None:
        """Keep a finished frame (PNG bytes) of the unfinished segment."""
        self._make()
        write_atomic(self.pending_frame(index), lambda file: file.write(png))

    def save_pending(self, frame: int, state: dict[str, Any]) -> None:
        """The state after `frame`, whose segment isn't finished yet."""
        self._make()
        write_atomic(self.path / PENDING_STATE, lambda file: torch.save({**state, "frame": frame}, file))

    def commit(self, segment: Path, frames: int, state: dict[str, Any]) -> None:
        """Record a finished segment and the state after its last frame, crash-safely."""
        name = f"state-{len(self.segments):05d}.pt"
        write_atomic(self.path / name, lambda file: torch.save(state, file))
        old_state = self.state
        self.segments.append({"file": segment.name, "frames": frames})
        self.state = name
        self._write_manifest()
        # only now is the older state, and the frames the segment holds, no longer needed
        for path in [self.path / PENDING_STATE, *self.path.glob("pending-*.png")] + (
            [self.path / old_state] if old_state else []
        ):
            path.unlink(missing_ok=True)

    def finish(self, end: int) -> None:
        """Mark the shot done: all its frames, up to `end` (exclusive), are in its segments."""
        self._make()
        self.finished_at = end
        self._write_manifest()

    def _write_manifest(self) -> None:
        payload = json.dumps({"segments": self.segments, "state": self.state, "finished_at": self.finished_at}, indent=1).encode()
        write_atomic(self.path / MANIFEST, lambda file: file.write(payload))
