"""The loop: read → stylise → write, with progress. The only orchestrator."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from .errors import Interrupted, VidiffError
from .io.background import Prefetch, Writer
from .io.workfolder import SEGMENT_FRAMES, WorkFolder, fingerprint
from .io.writer import SegmentEncoder, assemble
from .models.device import default_batch_size, is_out_of_memory
from .models.loading import load_parts
from .models.parts import ModelParts
from .models.tiny import TINY_MODELS
from .pipelines.img2img import Stylizer
from .plan import plan_run
from .settings.config import Config
from .settings.keyframes import split_weighted

log = logging.getLogger("vidiff")


@dataclass(frozen=True)
class RunResult:
    output: str
    frames: int
    seconds: float
    size: tuple[int, int]

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        width, height = self.size
        return (
            f"{self.frames} frames at {width}x{height} in {self.seconds:.1f} s "
            f"({self.fps:.2f} frames/s) -> {self.output}"
        )


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    config: Config | None = None,
    *,
    parts: ModelParts | None = None,
    progress: bool = False,
    **settings,
) -> RunResult:
    """Stylise the video at `input` into `output` and return what was done.

    `config` holds the settings (see vidiff.Config); keyword `settings` override its fields, so
    `stylize_video("in.mp4", "out.mp4", prompt="a wooden carving", strength=0.6)` works alone.
    Pass `parts` (from vidiff.load_parts) to reuse loaded models across videos.
    Raises VidiffError, with a message meant for the user, for anything the user can fix.
    """
    began = time.perf_counter()
    config = (config or Config()).replace(**settings)

    # 1. Check the settings, the input and the output before any expensive work
    plan = plan_run(input, output, config)
    info, size, reader = plan.info, plan.size, plan.reader
    for warning in plan.warnings():
        log.warning(warning)

    # 2. Build the model parts once, then prepare the per-video state (prompt embeddings, sampler)
    if parts is None:
        parts = load_parts(
            config.model, config.device, config.dtype, config.allow_pickle, model_config=config.model_config,
            lora=config.lora, embedding=config.embedding, controlnet=config.controlnet, vae=config.vae,
        )  # fmt: skip
    else:
        _check_parts(parts, config)
    if parts.name in TINY_MODELS:
        log.warning(f"note: --model {parts.name} is a small random model for smoke tests; its output carries no real style")
    frames_dir = _frames_dir(config.save_frames)

    # 3. The work folder beside OUTPUT: resume where an earlier run of the same settings stopped
    work = WorkFolder(output, fingerprint(config, input), restart=config.restart)
    if work.stale:
        log.warning(f"discarded the unfinished work in {work.path}: it was made with other settings or input")
    resume = work.checkpoint(needs_memory=config.cross_frame_attn)
    total = max(reader.expected_frames, resume.next_frame)
    if resume.next_frame:
        log.info(f"resuming at frame {resume.next_frame} of {total}")

    # 4. Stream: read ahead, stylise in batches, write behind; encode segment by segment
    segment = _Segment(work, size, info.fps, config.crf, resume.pending, frames_dir)
    bar = tqdm(total=total, initial=resume.next_frame, unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
    with (
        _disk_errors(work),
        Stylizer(parts, config, float(info.fps)) as stylizer,
        reader,
        Prefetch(reader) as frames,
        segment,
        Writer() as writer,
        _graceful_interrupts() as interrupted,
        bar,
    ):
        batch_size = _batch_size(config, stylizer, size, parts)
        state = stylizer.import_state(resume.state) if resume.state is not None else None
        batch: list = []
        for index, frame in enumerate(frames):
            if index < resume.next_frame:
                continue  # decoded, not stylised: done by an earlier run
            batch.append(frame)
            if index + 1 < batch_end(index + 1 - len(batch), batch_size):
                continue
            state = _stylise(stylizer, batch, index + 1 - len(batch), state, segment, writer, config, size, parts)
            bar.update(len(batch))
            batch = []
            if interrupted():
                writer.drain()
                segment.suspend(index, stylizer.export_state(state))
                raise Interrupted(
                    f"interrupted after frame {index + 1} of {total}; run the same command again to resume "
                    f"(the work so far is in {work.path})"
                )
        if batch:  # the last frames, fewer than a batch
            state = _stylise(stylizer, batch, index + 1 - len(batch), state, segment, writer, config, size, parts)
            bar.update(len(batch))
        writer.drain()
        segment.finish(stylizer.export_state(state) if state is not None else {})

    # 5. Join the segments, add the audio, and put the video at OUTPUT
    frames = work.manifest.frames_done
    if frames == 0:  # the container promised frames the decoder couldn't deliver
        work.remove()
        raise VidiffError(f"input {input} has no frames that can be decoded from {config.start} s on")
    assemble(work.segments, output, info.fps, frames, audio_source=input, audio_start=reader.start_seconds)
    work.remove()
    return RunResult(str(output), frames, time.perf_counter() - began, size)


def batch_end(first: int, batch_size: int) -> int:
    """Where the batch that starts at frame `first` ends: batches start at fixed frame numbers and never
    cross a segment, so a resumed run batches its frames as the first run did (bit-identical output)."""
    segment_start = first - first % SEGMENT_FRAMES
    offset = first - segment_start
    return min(segment_start + (offset // batch_size + 1) * batch_size, segment_start + SEGMENT_FRAMES)


def _batch_size(config: Config, stylizer: Stylizer, size: tuple[int, int], parts: ModelParts) -> int:
    if not stylizer.batchable:
        if config.batch_size and config.batch_size > 1:
            log.warning(
                "note: with --blend or --flow-blend each frame needs the previous output: "
                "frames run one at a time, whatever --batch-size says"
            )
        return 1
    return config.batch_size or default_batch_size(parts.device, size)


def _stylise(stylizer, frames, first, state, segment, writer, config, size, parts):
    """Stylise a batch and queue its frames for writing; returns the state after its last frame."""
    try:
        results = stylizer.batch(frames, first, state)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        raise VidiffError(
            f"out of {parts.device.type} memory at frames {first}-{first + len(frames) - 1} ({size[0]}x{size[1]}, "
            f"{len(frames)} at once); lower --batch-size or --max-side (now {config.max_side}); "
            "the finished frames are kept and the same command resumes"
        ) from None
    for offset, result in enumerate(results):
        index = first + offset
        if result.new_shot and index > 0:
            log.info(f"cut at frame {index}: a new shot starts afresh")
        # the state is taken here, in this thread: the cross-frame memory moves on with the next frame
        if segment.completes_with_next():
            saved = stylizer.export_state(result.state)
        elif offset == len(results) - 1 and not config.cross_frame_attn:
            # the cross-frame memory is too big to save every frame: with it, a hard kill resumes
            # from the last segment (a graceful stop still saves it, in suspend); without it, the
            # state is saved at the end of each batch, where a resumed run can start its batches
            saved = stylizer.export_state(result.state, with_memory=False)
        else:
            saved = None
        writer.submit(segment.add(index, result.image, saved))
    return results[-1].state


class _Segment:
    """The segment being encoded: frames go to ffmpeg and, until the segment is committed, to PNGs.

    add() is called in the main thread and returns the file work, which the writer thread runs in order.
    """

    def __init__(self, work: WorkFolder, size, fps, crf: int, pending: list[Path], frames_dir: Path | None):
        self.work, self.size, self.fps, self.crf, self.frames_dir = work, size, fps, crf, frames_dir
        self.pending = pending  # finished frames of this segment from an earlier run, to encode first
        self.encoder: SegmentEncoder | None = None
        self.count = len(pending)  # frames given to the open segment so far, as the main thread counts them

    def completes_with_next(self) -> bool:
        return self.count + 1 >= SEGMENT_FRAMES

    def _open(self) -> SegmentEncoder:
        if self.encoder is None:
            self.encoder = SegmentEncoder(self.work.next_segment(), self.size, self.fps, self.crf).__enter__()
            for path in self.pending:
                self.encoder.write(_load_png(path))
            self.pending = []
        return self.encoder

    def add(self, index: int, image, state: dict | None):
        """Count the frame in; return the job that encodes and keeps it (and commits a full segment)."""
        self.count += 1
        commit = self.count >= SEGMENT_FRAMES
        if commit:
            self.count = 0

        def job() -> None:
            png = _png_bytes(image)  # encoded once for --save-frames and the work folder
            if self.frames_dir is not None:
                # an OSError here (a full disk) becomes one resumable line in _disk_errors
                (self.frames_dir / f"frame_{index:06d}.png").write_bytes(png)
            self._open().write(image)
            if commit:
                self._commit(state)
                return
            self.work.save_frame(index, png)
            if state is not None:
                self.work.save_pending(index, state)

        return job

    def _commit(self, state: dict) -> None:
        encoder, self.encoder = self.encoder, None
        encoder.__exit__(None, None, None)
        self.work.commit(encoder.path, encoder.frames_written, state)

    def suspend(self, index: int, state: dict) -> None:
        """Stop after frame `index` (the writer drained): its state is saved; the unfinished segment waits as PNGs."""
        if self.encoder is not None:
            self.work.save_pending(index, state)

    def finish(self, state: dict) -> None:
        """After the last frame (the writer drained): commit what is left."""
        if self.pending:
            self._open()
        if self.encoder is not None:
            self._commit(state)

    def __enter__(self) -> "_Segment":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.encoder is not None:  # a partial segment: its frames are kept as PNGs instead
            self.encoder.__exit__(exc_type or RuntimeError, exc, tb)
            self.encoder = None


@contextmanager
def _disk_errors(work: WorkFolder):
    """A full disk or a vanished folder mid-run: say so in one line; the work saved so far stays resumable."""
    try:
        yield
    except OSError as err:
        if isinstance(err, (BrokenPipeError, ConnectionError)) or err.errno is None:
            raise
        where = f" ({err.filename})" if err.filename else ""
        raise VidiffError(
            f"disk error: {err.strerror}{where}; the work so far is in {work.path}: "
            "fix the cause (free disk space) and run the same command to resume"
        ) from None


@contextmanager
def _graceful_interrupts():
    """The first Ctrl-C lets the current frame finish (then the run stops, resumable); a second stops at once."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    requested = []

    def handler(signum, frame):
        if requested:
            raise KeyboardInterrupt
        requested.append(signum)
        log.warning("stopping after this frame (Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(requested)
    finally:
        signal.signal(signal.SIGINT, previous)


def _load_png(path: Path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VidiffError(f"the work folder's frame {path} can't be read; run again with --restart")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_parts(parts: ModelParts, config: Config) -> None:
    """Parts loaded once for several videos must hold what the config names (LoRA scales are fused in)."""
    loaded = {"lora": tuple(parts.lora), "embedding": tuple(parts.embedding),
              "controlnet": tuple(split_weighted(spec)[0] for spec in parts.controlnet), "vae": parts.vae_source}  # fmt: skip
    wanted = {"lora": config.lora, "embedding": config.embedding,
              "controlnet": tuple(split_weighted(spec)[0] for spec in config.controlnet), "vae": config.vae}  # fmt: skip
    for name in loaded:
        if loaded[name] != wanted[name]:
            raise VidiffError(
                f"the model parts were loaded with {name} {loaded[name]} but the settings name {wanted[name]}; "
                f"load them with load_parts(..., {name}=config.{name})"
            )


def _frames_dir(save_frames: str | None) -> Path | None:
    if save_frames is None:
        return None
    folder = Path(save_frames)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VidiffError(f"--save-frames {save_frames}: can't create the folder: {err.strerror}") from None
    return folder


def _png_bytes(rgb) -> bytes:
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise VidiffError("OpenCV could not encode a frame as PNG")
    return png.tobytes()

