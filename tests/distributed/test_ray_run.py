"""Runs on a local Ray started for this module: the frames equal the single-process run's, and a killed
driver resumes. Ray takes seconds to start, so the module starts it once and keeps its clips short."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest

from helpers import cut_clip, read_frames
from vidiff.distributed.worker import _local_input
from vidiff.errors import Interrupted, VidiffError
from vidiff.io.workfolder import SEGMENT_FRAMES
from vidiff.plan import plan_run
from vidiff.run import stylize_video
from vidiff.settings.config import Config

ray = pytest.importorskip("ray")

# shot 0 is longer than a segment, so it can be cut into chunks and a killed run can resume inside it
BEFORE, AFTER = SEGMENT_FRAMES + 12, 12
BASE = dict(model="tiny", prompt="a wooden carving", steps=2, strength=0.5, max_side=64)
# the presets' stack: each frame depends on the one before, within its shot
CHAINED = dict(BASE, noise="fixed", flow_blend=0.2, fusion=1.0, fusion_end=0.3, color_match=True)
INDEPENDENT = dict(BASE, noise="per-frame")


@pytest.fixture(scope="module")
def cluster():
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield context.address_info["gcs_address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return cut_clip(tmp_path_factory.mktemp("ray") / "two shots.mp4", BEFORE, AFTER)


@pytest.fixture(scope="module")
def chained_reference(clip, tmp_path_factory):
    """The single-process run, uninterrupted."""
    out = tmp_path_factory.mktemp("reference") / "out.mp4"
    with torch_threads(1):
        stylize_video(clip, out, **CHAINED)
    return read_frames(out)


@contextmanager
def torch_threads(count: int):
    """Torch on the workers' one thread: CPU convolutions split over another number of threads round
    differently (a level here and there), so the frames compared are made on as many threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def same_frames(found, expected) -> None:
    assert len(found) == len(expected) == BEFORE + AFTER
    assert all(np.array_equal(a, b) for a, b in zip(found, expected))


def test_two_shots_on_two_workers_give_the_single_process_frames(cluster, clip, chained_reference, tmp_path):
    out = tmp_path / "out.mp4"
    result = stylize_video(clip, out, ray="local", workers=2, **CHAINED)
    assert result.frames == BEFORE + AFTER
    same_frames(read_frames(out), chained_reference)
    assert not (tmp_path / "out.mp4.vidiff").exists()


def test_chunks_of_frame_independent_settings_give_the_single_process_frames(cluster, clip, tmp_path, caplog):
    plain, out = tmp_path / "plain.mp4", tmp_path / "out.mp4"
    with torch_threads(1):
        stylize_video(clip, plain, **INDEPENDENT)
    with caplog.at_level(logging.INFO, logger="vidiff"):
        stylize_video(clip, out, ray="local", workers=2, chunk=SEGMENT_FRAMES, **INDEPENDENT)
    # frames 0-47 and 48-59 of shot 0, and shot 1
    assert any("for 3 chunk(s)" in record.message for record in caplog.records)
    same_frames(read_frames(out), read_frames(plain))
    assert not any("seam" in record.message for record in caplog.records)


def test_chunks_of_warped_noise_under_cadence_say_that_their_seams_show(cluster, clip, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="vidiff"):
        stylize_video(clip, tmp_path / "out.mp4", ray="local", workers=2, chunk=SEGMENT_FRAMES,
                      **dict(INDEPENDENT, noise="warped", cadence=2))  # fmt: skip
    assert any("warped noise" in record.message and "seam" in record.message for record in caplog.records)


def test_a_driver_killed_with_sigkill_resumes_with_the_same_frames(cluster, clip, chained_reference, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    options = [arg for key, value in CHAINED.items() for arg in _option(key, value)]
    args = [sys.executable, "-m", "vidiff", "stylize", str(clip), str(out), *options, "--ray", cluster,
            "--workers", "2", "-q"]  # fmt: skip
    process = subprocess.Popen(args, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stderr=subprocess.PIPE)
    work = tmp_path / "out.mp4.vidiff"
    deadline = time.monotonic() + 120
    # shot 0's first segment kept (in its manifest): the driver dies while shot 0 is half done
    while time.monotonic() < deadline and process.poll() is None and not _kept_segments(work / "chunk-000000"):
        time.sleep(0.02)
    assert process.poll() is None, f"the driver ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()

    with caplog.at_level(logging.INFO, logger="vidiff"):
        stylize_video(clip, out, ray=cluster, workers=2, **CHAINED)
    resumed = [record.message for record in caplog.records if record.message.startswith("resuming")]
    assert resumed and not resumed[0].startswith("resuming: 0 ")
    same_frames(read_frames(out), chained_reference)


def test_a_worker_that_dies_has_its_chunk_made_again_by_another(cluster, clip, chained_reference, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    killed = []

    def kill_a_worker() -> None:  # SIGKILL the first worker seen stylising (a child of this session's Ray)
        deadline = time.monotonic() + 120
        while not killed and time.monotonic() < deadline:
            for process in psutil.Process().children(recursive=True):
                try:
                    if process.name().startswith("ray::ChunkWorker.run"):
                        # at once: shot 1's chunk of 12 tiny-model frames can be done in a few tenths of a second,
                        # and a worker killed after its chunk loses no work (nothing would be made again)
                        process.send_signal(signal.SIGKILL)
                        killed.append(process.pid)
                        return
                except psutil.Error:
                    continue
            time.sleep(0.05)

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    with caplog.at_level(logging.INFO, logger="vidiff"):
        stylize_video(clip, out, ray="local", workers=2, **CHAINED)
    killer.join()
    assert killed
    assert any("died at frames" in record.message for record in caplog.records)
    same_frames(read_frames(out), chained_reference)


def test_a_cancel_stops_every_worker_and_leaves_the_run_resumable(cluster, clip, tmp_path):
    out, cancel = tmp_path / "out.mp4", threading.Event()
    work = tmp_path / "out.mp4.vidiff"

    def press_ctrl_c() -> None:  # as the command line's first Ctrl-C does, once shot 1 is kept (shot 0 runs on)
        while not cancel.is_set() and not _kept_segments(work / f"chunk-{BEFORE:06d}"):
            time.sleep(0.02)
        cancel.set()

    watcher = threading.Thread(target=press_ctrl_c, daemon=True)
    watcher.start()
    began = time.monotonic()
    with pytest.raises(Interrupted, match="run the same command again to resume"):
        stylize_video(clip, out, ray="local", workers=2, cancel=cancel, **INDEPENDENT)
    cancel.set()
    assert not out.exists()
    assert _kept_segments(work / f"chunk-{BEFORE:06d}")
    # the workers were stopped, not waited for: a new run gets both CPUs of the module's Ray at once
    assert ray.available_resources().get("CPU", 0) == 2 or _freed_within(5)
    assert time.monotonic() - began < 120


def test_a_model_a_worker_cant_find_is_one_error_naming_the_machine(cluster, clip, tmp_path):
    missing = tmp_path / "no such model"
    with pytest.raises(VidiffError, match="^on .*: model not found: .*no such model"):
        stylize_video(clip, tmp_path / "out.mp4", ray="local", workers=1, **dict(INDEPENDENT, model=str(missing)))


def test_a_machine_that_cant_see_the_input_gets_its_bytes_from_the_object_store(cluster, clip, tmp_path):
    plan = plan_run(clip, tmp_path / "out.mp4", Config(**INDEPENDENT))
    data = ray.put(clip.read_bytes())

    @ray.remote(num_cpus=1)
    def elsewhere(plan, data):  # identity that matches no file here, as on another machine
        scratch = Path(tempfile.mkdtemp(prefix="vidiff-test-"))
        found = _local_input(plan, {"size": -1}, data, scratch)
        return found["input"], found["info"].path, Path(found["input"]).read_bytes()

    path, info_path, copied = ray.get(elsewhere.remote(plan, [data]))
    assert path == info_path != str(clip)
    assert copied == clip.read_bytes()


def _freed_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == 2:
            return True
        time.sleep(0.1)
    return False


def _kept_segments(folder) -> list:
    try:
        return json.loads((folder / "manifest.json").read_text())["segments"]
    except (OSError, ValueError, KeyError):
        return []


def _option(key: str, value) -> list[str]:
    name = "--" + key.replace("_", "-")
    if value is True:
        return [name]
    return [name, str(value)]
