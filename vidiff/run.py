"""The loop over shots and windows: read → process → write, with progress, cancel and resume. The only orchestrator."""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
from tqdm import tqdm

from .distributed.chunks import noise_carried_exactly
from .errors import Interrupted, VidiffError
from .io.background import Prefetch, Writer
from .io.side_by_side import preview_path, write_side_by_side
from .io.workfolder import SEGMENT_FRAMES, Checkpoint, ShotFolder, WorkFolder, fingerprint, segment_bounds
from .io.formats import SEGMENT_SUFFIXES
from .io.writer import SegmentEncoder, assemble
from .models.device import default_batch_size, is_out_of_memory
from .models.loading import check_parts, load_parts
from .models.parts import ModelParts
from .models.tiny import TINY_MODELS
from .pipelines.cadence import CadenceProcessor
from .pipelines.img2img import Img2ImgProcessor
from .pipelines.motion import MotionProcessor
from .pipelines.processor import Processor
from .plan import RunPlan, Shot, plan_run
from .settings.config import Config
from .status import status_line

log = logging.getLogger("vidiff")


@dataclass(frozen=True)
class RunResult:
    output: str
    frames: int
    seconds: float
    size: tuple[int, int]
    preview: str | None = None  # the side-by-side video, with `preview`

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        width, height = self.size
        return (
            f"{self.frames} frames at {width}x{height} in {self.seconds:.1f} s "
            f"({self.fps:.2f} frames/s) -> {self.output}" + (f" (side by side: {self.preview})" if self.preview else "")
        )


@dataclass(frozen=True)
class Progress:
    """What on_progress is told after each finished frame."""

    done: int  # frames finished, those of earlier runs included
    total: int  # frames planned (with cut detection off, the container's count: an estimate)
    frame: np.ndarray  # the frame just finished, RGB uint8 (height, width, 3)
    index: int  # its frame number


def stylize_video(
    input: str | os.PathLike,
    output: str | os.PathLike,
    config: Config | None = None,
    *,
    parts: ModelParts | None = None,
    progress: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    cancel: threading.Event | None = None,
    **settings,
) -> RunResult:
    """Stylise the video at `input` into `output` and return what was done.

    `config` holds the settings (see vidiff.Config); keyword `settings` override its fields, so
    `stylize_video("in.mp4", "out.mp4", prompt="a wooden carving", strength=0.6)` works alone.
    Pass `parts` (from vidiff.load_parts) to reuse loaded models across videos; a run leaves them as
    it found them. `on_progress(Progress)` is called after each finished frame, in this thread.
    Setting `cancel` (from any thread) stops the run after the window in progress (one frame, or a
    batch): the work is saved and Interrupted is raised; calling again with the same arguments
    resumes it, bit-identically. `progress` shows a progress bar on stderr. With `ray` set, the shots
    (and chunks) are made by workers on a Ray cluster (vidiff/distributed/), each loading its own model.
    Raises VidiffError, with a message meant for the user, for anything the user can fix.
    """
    began = time.perf_counter()
    config = (config or Config()).replace(**settings)
    if config.ray is not None:
        # many workers, each loading its own model, on a Ray cluster: distributed/ray_run.py
        from .distributed.ray_run import stylize_on_ray

        if parts is not None or on_progress is not None:
            raise VidiffError("with ray, each worker loads its own model and keeps its frames: leave out parts and "
                              "on_progress")  # fmt: skip
        return stylize_on_ray(input, output, config, progress=progress, cancel=cancel)

    # 1. Check the settings, the input and the output, and find the shots, before any expensive work
    plan = plan_run(input, output, config)
    for warning in plan.warnings():
        log.warning(warning)

    # 2. Build the model parts once (or check the ones given)
    if parts is None:
        with status_line("loading the model …", enabled=progress):
            parts = load_parts(config)
    else:
        check_parts(parts, config)
    if parts.name in TINY_MODELS:
        log.warning(f"note: --model {parts.name} is a small random model for smoke tests; its output carries no real style")
    frames_dir = _frames_dir(config.save_frames)

    # 3. The work folder beside OUTPUT: resume where an earlier run of the same settings stopped
    work = WorkFolder(output, fingerprint(config, input), restart=config.restart)
    if work.stale:
        log.warning(f"discarded the unfinished work in {work.path}: it was made with other settings or input")
    shots = _shot_work(plan, work, needs_memory=config.cross_frame_attn)
    done = sum((folder.finished_at if checkpoint is None else checkpoint.next_frame) - shot.first
               for shot, folder, checkpoint in shots)
    total = max(plan.frames, done)
    todo = [(shot, folder, checkpoint) for shot, folder, checkpoint in shots if checkpoint is not None]
    if done and todo:
        log.info(f"resuming at frame {todo[0][2].next_frame} of {total}")

    # 4. Stream: read ahead, process window by window inside each shot, write behind
    stop_requested = cancel.is_set if cancel is not None else (lambda: False)
    bar = tqdm(total=total, initial=done, unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
    batch_size = config.batch_size or default_batch_size(parts.device, plan.size)
    reader = plan.open_reader()
    with (
        _disk_errors(work.path),
        _processor(parts, plan, batch_size) as processor,
        reader,
        Writer() as writer,
        bar,
    ):
        if not processor.batchable and config.batch_size and config.batch_size > 1:
            log.warning("note: with --blend, --flow-blend or --fusion each frame needs the previous output: "
                        "frames run one at a time, whatever --batch-size says")  # fmt: skip
        if todo:
            shot, _folder, checkpoint = todo[0]
            frames = reader.frames(checkpoint.next_frame, shot.source_first, shot.first)
            counter = _Counter(done, total, bar, on_progress)
            with Prefetch(frames) as prefetched:
                stream = _FrameStream(prefetched, checkpoint.next_frame)
                for shot, folder, checkpoint in todo:
                    # the last shot runs to the input's end: the count may be an estimate, and a damaged
                    # frame that ended the shot pass must stop the run there too
                    end = None if shot is plan.shots[-1] else shot.end
                    _run_shot(processor, stream, shot, end, folder, checkpoint, writer, plan, frames_dir,
                              stop_requested, counter)  # fmt: skip

    # 5. Join the segments of every shot, add the audio, and put the video at OUTPUT
    folders = [folder for _shot, folder, _checkpoint in shots]
    segments = [path for folder in folders for path in folder.segment_files]
    frames = sum(folder.frames_done for folder in folders)
    if frames == 0:  # the container promised frames the decoder couldn't deliver
        work.remove()
        raise VidiffError(f"input {input} has no frames that can be decoded from {config.start} s on")
    assemble(segments, output, plan.info.fps, frames, audio_source=input, audio_start=plan.start_seconds,
             form=plan.output_form)
    work.remove()

    # 6. Source | result side by side beside OUTPUT, from the finished OUTPUT and the frames it was made from
    preview = None
    if config.preview:
        preview = preview_path(output)
        with plan.open_reader() as reader:
            write_side_by_side(reader.frames(), output, preview, crf=config.crf)
    return RunResult(str(output), frames, time.perf_counter() - began, plan.size, None if preview is None else str(preview))


def stylize_chunk(
    parts: ModelParts,
    plan: RunPlan,
    shot: Shot,
    checkpoint: Checkpoint,
    end: int | None,
    folder: ShotFolder,
    *,
    warmup_first: int | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> None:
    """Frames [checkpoint.next_frame, end) of `shot` into `folder`'s segments, exactly as stylize_video
    makes them from that checkpoint (`end` None: to the input's end); what a distributed run's worker
    does with a chunk. With `warmup_first` (and no state in the checkpoint) frames [warmup_first,
    next_frame) are processed first, not kept, so that chained settings settle: from an empty state, or
    with warped noise from the noise a whole-shot run carries to them. --save-frames writes where this runs."""
    batch_size = plan.config.batch_size or default_batch_size(parts.device, plan.size)
    keep_from = checkpoint.next_frame
    first = keep_from if warmup_first is None or checkpoint.state is not None else warmup_first
    counter = _Counter(0, (end or plan.frames) - keep_from, tqdm(disable=True), on_progress)
    reader = plan.open_reader()
    with _processor(parts, plan, batch_size) as processor, reader, Writer() as writer:
        with Prefetch(reader.frames(first, shot.source_first, shot.first)) as prefetched:
            stream = _FrameStream(prefetched, first)
            # warped noise is carried from the shot's first frame, which no warm-up settles: the warm-up starts
            # from the noise a whole-shot run reaches (worked out from the flow, without diffusing)
            carried = noise_carried_exactly(plan.config) and checkpoint.state is None and shot.first < first
            colours = shot.first < first and (first < keep_from or carried)
            anchor = _shot_anchor(processor, plan, shot) if colours else None
            state = None
            if carried:
                with plan.open_reader() as again:
                    before = islice(again.frames(shot.first, shot.source_first, shot.first), first - shot.first)
                    state = replace(processor.carried_noise(before, shot.first), anchor=anchor)
            # the warm-up: windows laid out as a run lays them out, none crossing the first kept frame; from an
            # empty state its first frame alone, as a shot's first is (cadence diffuses it)
            while first < keep_from:
                bounds = segment_bounds(first, shot.first, keep_from)
                frames = stream.read(first, first + 1 if state is None else processor.window_end(first, *bounds))
                if not frames:
                    break
                state = _process(processor, frames, first, state, plan)[-1].state
                if anchor is not None:
                    # colours are matched to the shot's first frame, as in a run of the whole shot, not the warm-up's
                    state = replace(state, anchor=anchor)
                first += len(frames)
            if state is not None:
                checkpoint = Checkpoint(keep_from, processor.export_state(state))
            _run_shot(processor, stream, shot, end, folder, checkpoint, writer, plan,
                      _frames_dir(plan.config.save_frames), lambda: False, counter)  # fmt: skip


def _shot_anchor(processor: Processor, plan: RunPlan, shot: Shot):
    """The shot's first stylised frame, the colour reference of its frames (None without colour matching):
    it starts from an empty state, so it is the frame a run of the whole shot makes."""
    if not plan.config.color_match:
        return None
    with plan.open_reader() as reader:
        frame = next(reader.frames(shot.first, shot.source_first, shot.first), None)
    return None if frame is None else _process(processor, [frame], shot.first, None, plan)[0].state.anchor


def _processor(parts: ModelParts, plan: RunPlan, batch_size: int) -> Processor:
    """The technique the settings ask for, built once for the run."""
    config, fps = plan.config, float(plan.info.fps)
    if config.motion_adapter is not None:
        return MotionProcessor(parts, config, fps, [shot.first for shot in plan.shots])
    # the plan's shots split at the cuts and no window crosses one: the processor needn't look for them
    # again (and between frames far apart, under cadence, a fast pan could look like one)
    diffuser = Img2ImgProcessor(parts, config, fps, batch_size, find_cuts=False)
    if config.cadence == 1:
        return diffuser
    shot_firsts = [shot.first for shot in plan.shots]
    if config.cadence == "auto":
        return CadenceProcessor(diffuser, config.cadence_max_gap, shot_firsts, plan.auto_diffused)
    return CadenceProcessor(diffuser, config.cadence, shot_firsts)


def _shot_work(plan: RunPlan, work: WorkFolder, needs_memory: bool) -> list[tuple[Shot, ShotFolder, Checkpoint | None]]:
    """Each planned shot with its folder and where it picks up (None: finished by an earlier run)."""
    found = []
    for shot in plan.shots:
        folder = work.shot(shot.first)
        # a shot is done only if it ended where this plan ends it (a run stopped by a damaged frame
        # may have ended its last shot early)
        last = shot is plan.shots[-1]
        finished = folder.finished_at is not None and (last or folder.finished_at == shot.end)
        found.append((shot, folder, None if finished else folder.checkpoint(needs_memory)))
    return found


def _run_shot(processor: Processor, stream, shot: Shot, end: int | None, folder: ShotFolder, checkpoint: Checkpoint,
              writer: Writer, plan: RunPlan, frames_dir, stop_requested, counter) -> None:  # fmt: skip
    """Process one shot's frames from its checkpoint, window by window; `end` None reads to the input's end."""
    config = plan.config
    state = processor.import_state(checkpoint.state) if checkpoint.state is not None else None
    segment = _Segment(folder, plan.size, plan.info.fps, config.crf, checkpoint.pending, frames_dir,
                       plan.output_form.segment_codec)
    first = checkpoint.next_frame
    with segment:
        while end is None or first < end:
            window_end = processor.window_end(first, *segment_bounds(first, shot.first, end))
            frames = stream.read(first, window_end)
            if not frames:
                break
            if first == shot.first and shot.index > 0:
                log.info(f"cut at frame {first}: a new shot starts afresh")
            results = _process(processor, frames, first, state, plan)
            for offset, result in enumerate(results):
                index = first + offset
                writer.submit(segment.add(index, result.image, _saved_state(processor, segment, result, offset, results,
                                                                            config)))  # fmt: skip
                counter.finished(index, result.image)
            state = results[-1].state
            first += len(frames)
            if stop_requested():
                writer.drain()
                segment.suspend(first - 1, processor.export_state(state))
                raise Interrupted(
                    f"interrupted after frame {first} of {counter.total}; run the same command again to resume "
                    f"(the work so far is in {folder.path.parent})"
                )
            if len(frames) < window_end - (first - len(frames)):
                break  # the input ended inside the window
        writer.drain()
        segment.finish(processor.export_state(state) if state is not None else {})
    folder.finish(first)


def _saved_state(processor, segment, result, offset, results, config) -> dict | None:
    """The state the work folder keeps after this frame, or None."""
    # the state is taken here, in this thread: the cross-frame memory moves on with the next window
    if segment.completes_with_next():
        return processor.export_state(result.state)
    if offset == len(results) - 1 and not config.cross_frame_attn:
        # the cross-frame memory is too big to save every frame: with it, a hard kill resumes
        # from the last segment (a graceful stop still saves it, in suspend); without it, the
        # state is saved at the end of each window, where a resumed run can start its windows
        return processor.export_state(result.state, with_memory=False)
    return None


def _process(processor: Processor, frames, first, state, plan: RunPlan):
    try:
        return processor.process(frames, first, state)
    except Exception as err:
        if not is_out_of_memory(err):
            raise
        width, height = plan.size
        raise VidiffError(
            f"out of {processor.parts.device.type} memory at frames {first}-{first + len(frames) - 1} ({width}x{height}, "
            f"{len(frames)} at once); lower --batch-size or --max-side (now {plan.config.max_side}); "
            "the finished frames are kept and the same command resumes"
        ) from None


class _FrameStream:
    """The reader's frames in order, numbered; frames before the one asked for are passed over."""

    def __init__(self, frames: Iterator[np.ndarray], first: int):
        self._frames, self._next = iter(frames), first

    def read(self, first: int, end: int) -> list[np.ndarray]:
        """Frames [first, end), fewer where the input ends."""
        found = []
        while self._next < end:
            frame = next(self._frames, None)
            if frame is None:
                break
            if self._next >= first:
                found.append(frame)
            self._next += 1
        return found


class _Counter:
    """Counts finished frames for the progress bar and on_progress."""

    def __init__(self, done: int, total: int, bar, on_progress):
        self.done, self.total, self.bar, self.on_progress = done, total, bar, on_progress

    def finished(self, index: int, image: np.ndarray) -> None:
        self.done += 1
        self.bar.update(1)
        if self.on_progress is not None:
            self.on_progress(Progress(self.done, max(self.total, self.done), image, index))


class _Segment:
    """The segment being encoded: frames go to ffmpeg and, until the segment is committed, to PNGs.

    add() is called in the main thread and returns the file work, which the writer thread runs in order.
    """

    def __init__(self, folder: ShotFolder, size, fps, crf: int, pending: list[Path], frames_dir: Path | None,
                 codec: str = "h264"):
        self.folder, self.size, self.fps, self.crf, self.frames_dir = folder, size, fps, crf, frames_dir
        self.codec = codec
        self.pending = pending  # finished frames of this segment from an earlier run, to encode first
        self.encoder: SegmentEncoder | None = None
        self.count = len(pending)  # frames given to the open segment so far, as the main thread counts them

    def completes_with_next(self) -> bool:
        return self.count + 1 >= SEGMENT_FRAMES

    def _open(self) -> SegmentEncoder:
        if self.encoder is None:
            path = self.folder.next_segment(SEGMENT_SUFFIXES[self.codec])
            self.encoder = SegmentEncoder(path, self.size, self.fps, self.crf, self.codec).__enter__()
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
            self.folder.save_frame(index, png)
            if state is not None:
                self.folder.save_pending(index, state)

        return job

    def _commit(self, state: dict) -> None:
        encoder, self.encoder = self.encoder, None
        encoder.__exit__(None, None, None)
        self.folder.commit(encoder.path, encoder.frames_written, state)

    def suspend(self, index: int, state: dict) -> None:
        """Stop after frame `index` (the writer drained): its state is saved; the unfinished segment waits as PNGs."""
        if self.encoder is not None:
            self.folder.save_pending(index, state)

    def finish(self, state: dict) -> None:
        """After the shot's last frame (the writer drained): commit what is left."""
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
def _disk_errors(path: Path):
    """A full disk or a vanished folder mid-run: say so in one line; the work saved so far stays resumable."""
    try:
        yield
    except OSError as err:
        if isinstance(err, (BrokenPipeError, ConnectionError)) or err.errno is None:
            raise
        where = f" ({err.filename})" if err.filename else ""
        raise VidiffError(
            f"disk error: {err.strerror}{where}; the work so far is in {path}: "
            "fix the cause (free disk space) and run the same command to resume"
        ) from None


def _load_png(path: Path):
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise VidiffError(f"the work folder's frame {path} can't be read; run again with --restart")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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
