"""A distributed run's unit of work, as plain data: shots, and shots cut into chunks of whole segments.

A shot starts from an empty state, so shots are independent by construction. A chunk inside a shot
is not: its first frame would need the state the frames before it leave. A chunk therefore starts
`warmup` frames early from an empty state and keeps its frames from its first on. Where a frame's
output depends on no earlier frame (is_chained false) the warm-up would change nothing and is left
out, and the frames equal those of a single-process run.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ..io.workfolder import SEGMENT_FRAMES
from ..plan import RunPlan, Shot
from ..settings.config import Config, values_of


@dataclass(frozen=True)
class Chunk:
    """Frames [first, end) of `shot`, made after processing frames [warmup_first, first) without keeping them."""

    shot: Shot
    first: int
    end: int | None  # None: to the input's end (the last chunk of the last shot: the frame count may be an estimate)
    warmup_first: int

    @property
    def name(self) -> str:
        """Its folder in the work folder."""
        return f"chunk-{self.first:06d}"


def is_chained(config: Config) -> bool:
    """Whether a frame's output depends on the frames of its shot before it (so a chunk needs a warm-up)."""
    carried = any(value > 0 for name in ("blend", "flow_blend", "fusion") for value in values_of(name, getattr(config, name)))
    return (carried or config.noise == "warped" or config.color_match or config.cross_frame_attn
            or config.skip_similar > 0 or config.cadence != 1
            # motion windows carry their overlap frames into the next window
            or config.motion_adapter is not None and config.context_overlap > 0)  # fmt: skip


def noise_carried_exactly(config: Config) -> bool:
    """Whether a chunk can start from the warped noise a whole-shot run reaches (carried along the flow
    from the shot's first frame, no diffusion): img2img on every frame, none skipped."""
    return (config.noise == "warped" and config.motion_adapter is None and config.cadence == 1
            and config.skip_similar == 0)  # fmt: skip


def chunk_frames(config: Config) -> int | None:
    """The frames a chunk holds: `chunk` rounded up to whole segments, so that a chunk's segments are the
    segments a single-process run encodes (None: whole shots)."""
    if config.chunk is None:
        return None
    return -(-config.chunk // SEGMENT_FRAMES) * SEGMENT_FRAMES


def warmup_frames(config: Config) -> int:
    return config.chunk_warmup if is_chained(config) and config.chunk is not None else 0


def plan_chunks(plan: RunPlan) -> list[Chunk]:
    """The run's chunks in frame order: each shot whole, or cut every chunk_frames frames."""
    size, warmup = chunk_frames(plan.config), warmup_frames(plan.config)
    chunks = []
    for shot in plan.shots:
        last_shot = shot is plan.shots[-1]
        firsts = [shot.first] if size is None else list(range(shot.first, max(shot.end, shot.first + 1), size))
        for n, first in enumerate(firsts):
            end = firsts[n + 1] if n + 1 < len(firsts) else (None if last_shot else shot.end)
            chunks.append(Chunk(shot, first, end, max(shot.first, first - warmup)))
    return chunks


def layout_fingerprint(base: str, config: Config) -> str:
    """The work folder's fingerprint for a distributed run: the frames' fingerprint (`base`, which leaves
    out where they are made) and the chunk layout, and the warm-up where it changes the frames."""
    layout = {"base": base, "chunk": chunk_frames(config), "warmup": warmup_frames(config), "layout": "ray-chunks-1"}
    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()
