"""The driver of a distributed run: plan, connect to Ray, hand chunks to workers, keep what comes back.

The driver reads nothing but the shot pass: workers read the input themselves (the driver's file where
they see it, else its bytes through Ray's object store), stylise their chunks with the single-process
loop (run.stylize_chunk), and send back encoded segments with the state after each. The driver keeps
them in the usual work folder, a folder per chunk (chunk-000000/, named by its first frame), so a
driver killed with kill -9 resumes from each chunk's last finished segment, bit-identically; at the end
it joins the segments with the audio into OUTPUT, atomically, as stylize_video does.

Faults: a worker that dies (a crash, its machine gone) is restarted by Ray (max_restarts); its chunk is
handed out again from its last finished segment, with a line saying so. Ray's own task retries are not
used for that: a retried task would start its chunk over and send the segments kept already again.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..errors import Interrupted, VidiffError
from ..io.atomic import write_atomic
from ..io.reader import input_identity
from ..io.workfolder import ShotFolder, WorkFolder, fingerprint
from ..io.writer import assemble
from ..plan import RunPlan, plan_run
from ..settings.config import Config
from .chunks import Chunk, layout_fingerprint, noise_carried_exactly, plan_chunks
from .worker import ChunkWorker

log = logging.getLogger("vidiff")

# How often Ray restarts a worker that died before it is given up.
WORKER_RESTARTS = 3
# How often one chunk may lose its worker before the run stops with an error.
CHUNK_TRIES = 3
# How often the driver looks at Ctrl-C while it waits for the workers (seconds).
POLL_SECONDS = 0.2
# How long the driver waits for a cluster's address to answer at all.
CONNECT_SECONDS = 5


@dataclass
class _Job:
    chunk: Chunk
    folder: ShotFolder
    tries: int = 0
    counted: int = 0  # frames counted on the progress bar since it was handed out
    committed: int = 0  # of those, the frames in segments the driver keeps

    def finished(self) -> bool:
        end = self.folder.finished_at
        return end is not None and (self.chunk.end is None or end == self.chunk.end)

    def frames_done(self) -> int:
        return self.folder.frames_done

    def frames_left(self) -> int:
        chunk = self.chunk
        return (chunk.end or chunk.shot.end) - chunk.first - self.frames_done()


@dataclass
class _Pool:
    """The workers and what each is doing."""

    idle: list = field(default_factory=list)
    running: dict = field(default_factory=dict)  # the stream of a worker's events -> (worker, job)
    reviving: dict = field(default_factory=dict)  # a call that answers once a restarted worker is back -> worker
    names: dict = field(default_factory=dict)  # worker -> its number, for the messages


def import_ray():
    """Ray, or the one line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise VidiffError("--ray needs Ray, which is not installed: pip install vidiff[ray]") from None
    return ray


def stylize_on_ray(input, output, config: Config, *, progress: bool = False, cancel: threading.Event | None = None):
    """stylize_video's work on Ray workers (config.ray says where); the same result and work-folder contract."""
    from ..run import RunResult, _disk_errors  # here: run.py hands over to this module

    began = time.perf_counter()
    ray = import_ray()

    # 1. The plan, the chunks and the work folder, before connecting: a bad setting costs no cluster
    plan = plan_run(input, output, config)
    for warning in plan.warnings():
        log.warning(warning)
    if plan.info.images:
        raise VidiffError("--ray takes a video file as INPUT, not an image sequence: make one first "
                          "(ffmpeg -framerate 24 -i 'img_%04d.png' -c:v libx264 -crf 10 in.mp4)")  # fmt: skip
    work = WorkFolder(output, layout_fingerprint(fingerprint(config, input), config), restart=config.restart)
    if work.stale:
        log.warning(f"discarded the unfinished work in {work.path}: it was made with other settings, input or chunks")
    chunks = plan_chunks(plan)
    if config.noise == "warped" and not noise_carried_exactly(config) and any(c.first > c.shot.first for c in chunks):
        # a warm-up settles what is blended, not the noise, which is carried from the shot's first frame
        log.warning("note: with warped noise and cadence or skip-similar a chunk's noise starts afresh, so each "
                    "chunk's first frame shows a seam no warm-up removes; leave out --chunk for seamless shots")  # fmt: skip
    jobs = [_Job(chunk, ShotFolder(work.path / chunk.name, chunk.first)) for chunk in chunks]
    todo = [job for job in jobs if not job.finished()]
    done = sum(job.frames_done() for job in jobs)
    total = max(plan.frames, done)
    if done and todo:
        log.info(f"resuming: {done} of {total} frames are done")

    # 2. The workers, and the chunks handed out to them
    if todo:
        with _disk_errors(work.path), _connected(ray, config.ray, config.workers):
            pool = _start_workers(ray, plan, min(_worker_count(ray, config), len(todo)), len(todo))
            bar = tqdm(total=total, initial=done, unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
            with bar:
                _run_jobs(ray, pool, todo, bar, cancel, lambda: _stopped(jobs, work.path))

    # 3. Join every chunk's segments, add the audio, and put the video at OUTPUT
    segments = [path for job in jobs for path in job.folder.segment_files]
    frames = sum(job.frames_done() for job in jobs)
    if frames == 0:
        work.remove()
        raise VidiffError(f"input {input} has no frames that can be decoded from {config.start} s on")
    assemble(segments, output, plan.info.fps, frames, audio_source=input, audio_start=plan.start_seconds)
    work.remove()
    return RunResult(str(output), frames, time.perf_counter() - began, plan.size)


@contextmanager
def _connected(ray, where: str, workers: int | None):
    """Ray started here (local), or the cluster joined; left again afterwards. A program that called
    ray.init itself keeps its connection."""
    if ray.is_initialized():
        yield
        return
    unreachable = _unreachable(where)
    if unreachable:
        raise VidiffError(f"--ray {where}: {unreachable}; start a cluster with `ray start --head`, or give --ray "
                          "local to start one on this machine")  # fmt: skip
    # here, as many CPU workers as asked for may share the cores (each runs torch on one thread)
    cpus = {"num_cpus": max(os.cpu_count() or 1, workers or 0)} if where == "local" else {}
    try:
        ray.init(address=where, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR, **cpus)
    except Exception as err:  # Ray raises ConnectionError, RuntimeError or ValueError by case
        reason = " ".join(str(err).split())[:200]
        raise VidiffError(f"--ray {where}: can't reach a Ray cluster there ({reason}); start one with `ray start "
                          "--head`, or give --ray local to start one on this machine") from None  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def _unreachable(where: str) -> str | None:
    """Why nothing can answer at an address, or None; Ray itself would retry an address for minutes."""
    if where in ("local", "auto"):
        return None
    host, _, port = where.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return "give local, auto, HOST:PORT (the head's GCS, port 6379) or ray://HOST:PORT (Ray Client, port 10001)"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as err:
        return f"nothing answers at {host}:{port} ({err.strerror or err})"
    return None


def _worker_count(ray, config: Config) -> int:
    gpus = ray.cluster_resources().get("GPU", 0)
    per_worker = _gpus_per_worker(ray, config)
    count = config.workers or (max(1, int(gpus // per_worker)) if per_worker else 1)
    cpus = ray.cluster_resources().get("CPU", 0)
    if count * per_worker > gpus and config.ray == "local":
        raise VidiffError(f"--workers {count} with {per_worker:g} GPU each need {count * per_worker:g} GPUs; this "
                          f"machine has {gpus:g}: give fewer --workers, or a share with --gpus-per-worker 0.5")  # fmt: skip
    if count * per_worker > gpus or count > cpus:  # a cluster may grow (an autoscaler): say so and wait
        log.warning(f"warning: {count} workers with {per_worker:g} GPU each need {count * per_worker:g} GPUs and "
                    f"{count} CPUs; the cluster has {gpus:g} and {cpus:g} now: the others wait for more")  # fmt: skip
    return count


def _gpus_per_worker(ray, config: Config) -> float:
    if config.gpus_per_worker is not None:
        return config.gpus_per_worker
    if config.device in ("cpu", "mps"):
        return 0.0
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def _start_workers(ray, plan: RunPlan, count: int, chunks: int) -> _Pool:
    """`count` workers, each loading the model once. Each takes a CPU (and its GPUs); torch gets that one core
    in each: run more workers, not more threads."""
    gpus = _gpus_per_worker(ray, plan.config)
    identity = input_identity(plan.input)
    # machines that don't see the driver's file take its bytes from the object store, fetched once per node
    on_one_machine = not plan.config.ray.startswith("ray://") and sum(node["Alive"] for node in ray.nodes()) == 1
    shared = None if on_one_machine else [ray.put(Path(plan.input).read_bytes())]
    remote = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=WORKER_RESTARTS, max_task_retries=0)(ChunkWorker)
    pool = _Pool()
    for number in range(count):
        worker = remote.remote(plan, identity, shared, 1)
        pool.idle.append(worker)
        pool.names[worker] = number + 1
    log.info(f"on Ray: {count} worker(s), {gpus:g} GPU each, for {chunks} chunk(s) of work")
    return pool


def _stopped(jobs: list[_Job], where: Path) -> Interrupted:
    kept, total = sum(job.frames_done() for job in jobs), max(job.chunk.end or job.chunk.shot.end for job in jobs)
    return Interrupted(f"interrupted with {kept} of {total} frames kept (each worker's unfinished segment is made "
                       f"again); run the same command again to resume (the work so far is in {where})")  # fmt: skip


def _run_jobs(ray, pool: _Pool, todo: list[_Job], bar, cancel: threading.Event | None, stopped) -> None:
    """Hand the chunks to the workers until all are done, keeping each segment as it arrives."""
    from ray.exceptions import ActorDiedError, RayActorError, RayTaskError

    # the longest first: a long shot started last would leave the other workers idle at the end
    pending = deque(sorted(todo, key=lambda job: job.frames_left(), reverse=True))
    try:
        while pending or pool.running:
            while pending and pool.idle:
                worker, job = pool.idle.pop(0), pending.popleft()
                start = job.folder.checkpoint(needs_memory=False)
                job.counted = job.committed = 0
                events = worker.run.options(num_returns="streaming").remote(job.chunk, start.state, start.next_frame)
                pool.running[events] = (worker, job)
            if cancel is not None and cancel.is_set():
                raise stopped()
            if not (pool.running or pool.reviving):
                raise VidiffError("every Ray worker died for good; see the workers' logs (/tmp/ray/session_latest/logs "
                                  "on their machines) and run the same command to resume")  # fmt: skip
            ready, _ = ray.wait([*pool.running, *pool.reviving], num_returns=1, timeout=POLL_SECONDS)
            for events in ready:
                if events in pool.reviving:
                    _revived(ray, pool, events)
                    continue
                worker, job = pool.running[events]
                try:
                    event = ray.get(next(events))
                except StopIteration:
                    del pool.running[events]
                    pool.idle.append(worker)
                    continue
                except RayTaskError as err:
                    if isinstance(err.cause, VidiffError):
                        raise VidiffError(err.cause.on_command_line()) from None
                    raise
                except RayActorError as err:
                    if err.actor_init_failed:  # a bug in the worker's start, not a lost machine
                        raise
                    del pool.running[events]
                    _lost(pool, worker, job, bar, permanently=isinstance(err, ActorDiedError))
                    pending.appendleft(job)
                    continue
                _keep(event, job, bar)
    finally:
        for worker in [*pool.idle, *pool.reviving.values(), *(worker for worker, _job in pool.running.values())]:
            ray.kill(worker)  # Ctrl-C or an error: every worker stops now


def _revived(ray, pool: _Pool, call) -> None:
    """A restarted worker answered (it is idle again), or is still restarting, or is gone for good."""
    from ray.exceptions import ActorDiedError, RayActorError

    worker = pool.reviving.pop(call)
    try:
        ray.get(call)
    except ActorDiedError:
        return
    except RayActorError:  # not back yet
        pool.reviving[worker.where.remote()] = worker
        return
    pool.idle.append(worker)


def _lost(pool: _Pool, worker, job: _Job, bar, permanently: bool) -> None:
    """A worker died under `job`: its chunk goes back to the queue, from its last kept segment."""
    job.tries += 1
    bar.update(-max(0, job.counted - job.committed))  # frames not in a kept segment are made again
    chunk = job.chunk
    resume = chunk.first + job.folder.frames_done
    if job.tries >= CHUNK_TRIES:
        raise VidiffError(f"frames {chunk.first}-{(chunk.end or chunk.shot.end) - 1} lost their worker {job.tries} "
                          "times; see the workers' logs (Ray's session folder, /tmp/ray/session_latest/logs) and run the "
                          "same command to resume")  # fmt: skip
    if not permanently:
        # Ray restarts it (and it loads the model again); meanwhile the chunk goes to another worker
        pool.reviving[worker.where.remote()] = worker
    log.warning(f"worker {pool.names[worker]} died at frames {chunk.first}-{(chunk.end or chunk.shot.end) - 1}; "
                f"they go to the next free worker from frame {resume}")  # fmt: skip


def _keep(event: tuple, job: _Job, bar) -> None:
    """A worker's news: frames finished, a segment to keep, or the chunk's end."""
    kind = event[0]
    if kind == "frames":
        job.counted += event[1]
        bar.update(event[1])
    elif kind == "segment":
        _, data, frames, state = event
        path = job.folder.next_segment()
        write_atomic(path, lambda file: file.write(data))
        job.folder.commit(path, frames, state)
        job.committed += frames
    elif kind == "end":
        job.folder.finish(event[1])
