"""The work folder beside OUTPUT that makes a run resumable: finished segments and the state after them.

OUTPUT.vidiff/
  manifest.json      the run's fingerprint, and the segments finished so far with their frame counts
  segment-00000.mp4  encoded, video only; joined without re-encoding at the end
  state.pt           what the next frame needs (temporal state, cross-frame attention memory)

Every file is written to a temporary name, fsynced and renamed, and the manifest last: after a
crash, kill -9 or power loss the folder describes a consistent prefix of the run. Disk use is the
encoded video plus one state, not a PNG per frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
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
MANIFEST = "manifest.json"
PENDING_STATE = "pending-state.pt"


def fingerprint(config, input_path: str | os.PathLike) -> str:
    """What the finished work depends on: the settings, the input's identity, and vidiff's version."""
    settings = fingerprint_settings(config)
    identity = {"path": os.path.abspath(input_path), **input_identity(input_path)}
    text = json.dumps(
        {"settings": settings, "input": identity, "version": __version__, "segment": SEGMENT_FRAMES}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Manifest:
    fingerprint: str
    segments: list[dict[str, Any]] = field(default_factory=list)  # [{"file": ..., "frames": n}]
    state: str | None = None  # the state after the last segment's last frame

    @property
    def frames_done(self) -> int:
        return sum(segment["frames"] for segment in self.segments)


@dataclass
class Checkpoint:
    """Where a run picks up: the next frame to stylise, the state before it, finished frames not yet encoded."""

    next_frame: int = 0
    state: dict[str, Any] | None = None
    pending: list[Path] = field(default_factory=list)


class WorkFolder:
    """Open (or start) the work folder for OUTPUT; stale work from other settings or input is discarded."""

    def __init__(self, output: str | os.PathLike, fingerprint: str, restart: bool = False):
        self.path = Path(f"{os.fspath(output)}.vidiff")
        self.stale = False
        manifest = None if restart else self._read_manifest()
        if manifest is not None and manifest.fingerprint != fingerprint:
            self.stale, manifest = True, None
        self.manifest = manifest
        if manifest is None:
            if self.path.exists():
                shutil.rmtree(self.path)
            try:
                self.path.mkdir()
            except OSError as err:
                raise VidiffError(f"can't create the work folder {self.path}: {err.strerror}") from None
            # the manifest first: pending frames in a folder without one would never be trusted
            self.manifest = Manifest(fingerprint)
            self._write_manifest()

    def _read_manifest(self) -> Manifest | None:
        try:
            data = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            manifest = Manifest(data["fingerprint"], data["segments"], data["state"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        files = [segment["file"] for segment in manifest.segments] + ([manifest.state] if manifest.state else [])
        if not all((self.path / name).is_file() for name in files):
            return None
        return manifest

    @property
    def segments(self) -> list[Path]:
        return [self.path / segment["file"] for segment in self.manifest.segments]

    def next_segment(self) -> Path:
        """Where the next segment is encoded; it counts only once committed."""
        return self.path / f"segment-{len(self.manifest.segments):05d}.mp4"

    def pending_frame(self, index: int) -> Path:
        return self.path / f"pending-{index:06d}.png"

    def checkpoint(self, needs_memory: bool) -> Checkpoint:
        """The furthest point the folder can resume from consistently."""
        done = self.manifest.frames_done
        committed = Checkpoint(done, self._load(self.manifest.state) if self.manifest.state else None)
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
        write_atomic(self.pending_frame(index), lambda file: file.write(png))

    def save_pending(self, frame: int, state: dict[str, Any]) -> None:
        """The state after `frame`, whose segment isn't finished yet."""
        write_atomic(self.path / PENDING_STATE, lambda file: torch.save({**state, "frame": frame}, file))

    def commit(self, segment: Path, frames: int, state: dict[str, Any]) -> None:
        """Record a finished segment and the state after its last frame, crash-safely."""
        name = f"state-{len(self.manifest.segments):05d}.pt"
        write_atomic(self.path / name, lambda file: torch.save(state, file))
        old_state = self.manifest.state
        self.manifest.segments.append({"file": segment.name, "frames": frames})
        self.manifest.state = name
        self._write_manifest()
        # only now is the older state, and the frames the segment holds, no longer needed
        for path in [self.path / PENDING_STATE, *self.path.glob("pending-*.png")] + (
            [self.path / old_state] if old_state else []
        ):
            path.unlink(missing_ok=True)

    def _write_manifest(self) -> None:
        payload = json.dumps(asdict(self.manifest), indent=1).encode()
        write_atomic(self.path / MANIFEST, lambda file: file.write(payload))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
