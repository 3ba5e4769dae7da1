"""The worker of a distributed run: a Ray actor that loads the model once and stylises chunks.

Plain Python: ray_run.py wraps it with ray.remote, so importing it needs no Ray. A chunk's frames are
made by run.stylize_chunk, the single-process run's own loop, into a folder on the worker's disk; each
finished segment is handed back to the driver (bytes, frame count, the state after it) instead of
kept there, so no filesystem needs to be shared.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import warnings
from dataclasses import replace
from pathlib import Path

from ..errors import VidiffError
from ..io.atomic import write_atomic
from ..io.reader import input_identity
from ..io.workfolder import Checkpoint, ShotFolder
from ..plan import RunPlan
from .chunks import Chunk

# How often a worker tells the driver how many frames it finished (a message per frame would do too,
# at a cost where frames are fast).
PROGRESS_SECONDS = 0.25


class ChunkWorker:
    def __init__(self, plan: RunPlan, identity: dict, input_bytes: list | None, threads: int):
        """`identity`: the input's size and modification time, which tell whether this machine sees the
        driver's file; `input_bytes`: [an object ref of the file's bytes] for machines that don't (a list,
        so that Ray hands the ref over unresolved and only those machines fetch it)."""
        for variable, value in {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "DIFFUSERS_VERBOSITY": "error",
                                "TRANSFORMERS_VERBOSITY": "error", "OPENCV_FFMPEG_LOGLEVEL": "-8"}.items():  # fmt: skip
            os.environ.setdefault(variable, value)
        # the command line's filters are its own process's: the libraries' notes would reach the driver's stderr
        warnings.filterwarnings("ignore", category=UserWarning, module="(diffusers|transformers|huggingface_hub)")
        warnings.filterwarnings("ignore", category=FutureWarning)
        import torch

        from ..models.loading import load_parts

        # this process is the worker's own: its share of the machine's cores
        torch.set_num_threads(threads)
        self.scratch = Path(tempfile.mkdtemp(prefix="vidiff-worker-"))
        # a problem the user can fix (a model this machine can't find) is told with the first chunk, in
        # one line, rather than as an actor that died at its start
        self.problem, self.parts = None, None
        try:
            self.plan = replace(plan, **_local_input(plan, identity, input_bytes, self.scratch))
            self.parts = load_parts(plan.config)
        except VidiffError as err:
            self.problem = f"on {socket.gethostname()}: {err.on_command_line()}"

    def where(self) -> str:
        return socket.gethostname()

    def run(self, chunk: Chunk, state: dict | None, next_frame: int):
        """Stylise `chunk` from `next_frame` (after the state `state`, None at the chunk's start). Yields
        ("frames", n) as frames finish, ("segment", bytes, frames, state) for each finished segment and
        ("end", frame) once the chunk ends, before frame `frame`."""
        from ..run import stylize_chunk

        if self.problem is not None:
            raise VidiffError(self.problem)
        events: queue.Queue = queue.Queue()
        folder = _Relay(self.scratch / chunk.name, chunk.first, events.put)
        tally = _Tally(events.put)

        def work() -> None:
            try:
                stylize_chunk(self.parts, self.plan, chunk.shot, Checkpoint(next_frame, state), chunk.end, folder,
                              warmup_first=chunk.warmup_first, on_progress=tally.add)  # fmt: skip
                tally.flush()
                events.put(None)
            except VidiffError as err:
                # as a plain VidiffError: it crosses to the driver whole (ConfigError's arguments don't)
                events.put(VidiffError(err.on_command_line()))
            except BaseException as err:
                events.put(err)

        thread = threading.Thread(target=work, name=f"vidiff-{chunk.name}", daemon=True)
        thread.start()
        try:
            while (event := events.get()) is not None:
                if isinstance(event, BaseException):
                    raise event
                yield event
        finally:
            thread.join(timeout=0)
            shutil.rmtree(folder.path, ignore_errors=True)


def _local_input(plan: RunPlan, identity: dict, input_bytes: list | None, scratch: Path) -> dict:
    """The plan's input on this machine: the driver's file where this machine sees it unchanged, else a
    copy of its bytes from the object store."""
    try:
        if input_identity(plan.input) == identity:
            return {}
    except OSError:
        pass
    if not input_bytes:
        raise VidiffError(f"a worker on {socket.gethostname()} can't read input {plan.input}")
    import ray

    local = scratch / f"input{Path(plan.input).suffix}"
    data = ray.get(input_bytes[0])
    write_atomic(local, lambda file: file.write(data))
    return {"input": str(local), "info": replace(plan.info, path=str(local))}


class _Relay(ShotFolder):
    """A chunk's folder on the worker: each finished segment goes to the driver, which keeps the work
    folder; the frames of an unfinished segment aren't kept (a chunk resumes from its last segment)."""

    def __init__(self, path: Path, first: int, send):
        super().__init__(path, first)
        self.send = send

    def save_frame(self, index: int, png: bytes) -> None:
        pass

    def save_pending(self, frame: int, state: dict) -> None:
        pass

    def commit(self, segment: Path, frames: int, state: dict) -> None:
        self.send(("segment", segment.read_bytes(), frames, state))
        segment.unlink()
        self.segments.append({"file": segment.name, "frames": frames})  # the next segment's name follows it

    def finish(self, end: int) -> None:
        self.send(("end", end))


class _Tally:
    """Finished frames, told to the driver at most every PROGRESS_SECONDS."""

    def __init__(self, send):
        self.send, self.count, self.last = send, 0, time.monotonic()

    def add(self, _progress) -> None:
        self.count += 1
        if time.monotonic() - self.last >= PROGRESS_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.send(("frames", self.count))
        self.count, self.last = 0, time.monotonic()
