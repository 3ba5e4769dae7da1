"""Ray scaling benchmark: one video on 1, 2, ... workers against the plain single-process run, and the
seams that chunks with a warm-up leave in a shot under the presets' chained settings.

    python benchmarks/ray_scaling.py [--workers 1,2] [--frames 96] [--seam-frames 144] [--warmups 0,4,8,16]
                                     [--size 256x192] [--model M] [--ray local|auto|ADDRESS] [--out benchmarks/RESULTS.md]

1. Speed: a two-shot clip (benchmarks/clips.py's cut: a pan, a hard cut, another pan) stylised by
   vidiff.stylize_video in this process (torch on --threads threads), then with ray=... and each
   --workers count (each worker a process with torch on one thread, or a GPU). Wall-clock times
   include loading the model (once per worker); Ray's own start is timed apart, and the rate once
   frames flow (from the first frames reported to the last) is given beside the wall-clock one. It
   also checks that the frames equal the single-process run's (shots are independent, so they must).
2. Seams: a one-shot pan of --seam-frames frames, cut into chunks of 48 frames, with each warm-up of
   --warmups, under the wooden-carving preset's temporal stack (read from the preset: now warped
   noise, flow-blend 0.2, fusion 1.0 over the first 30% of the steps, colour matching). The warp error (stylised frame t - 1 warped
   onto t along the source's flow, vidiff.score's measure) of the pairs that straddle a chunk's first
   frame is set against that of the other pairs, in the same run and in the unchunked one.

The model is vidiff/models/tiny_trained (a small model trained offline that follows its source, see
benchmarks/README.md) unless --model names another. A benchmark, not a test: nothing fails when a
target is missed (2 workers >= 1.7x one worker; seams within 1.2x of the within-shot warp error); the
tables say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # clips.py and report.py, beside this file

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import vidiff  # noqa: E402
from clips import cut_frames, pan_frames, write_frames  # noqa: E402
from report import machine, revision, write_section  # noqa: E402
from vidiff.distributed import ray_run  # noqa: E402
from vidiff.models.tiny import TRAINED_TINY  # noqa: E402
from vidiff.io.workfolder import SEGMENT_FRAMES  # noqa: E402
from vidiff.score import pair_errors  # noqa: E402
from vidiff.temporal.flow import backward_flow  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
TRAINED = TRAINED_TINY
SETTINGS = dict(
    prompt="a wooden carving, hand-carved from walnut, visible wood grain",
    negative_prompt="photo, blurry, low quality",
    strength=0.55, steps=10, guidance=7.5, scheduler="dpm++2m-karras", seed=1234, crf=4, overwrite=True,
)  # fmt: skip
# the wooden-carving preset's temporal stack, as the preset has it now
PRESET_STACK = {key: vidiff.load_preset("wooden-carving").settings[key]
                for key in ("noise", "flow_blend", "fusion", "fusion_end", "color_match")}  # fmt: skip
TARGET_SPEEDUP, TARGET_SEAM = 1.7, 1.2


def decoded(path: Path) -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(path)), []
    while (found := capture.read())[0]:
        frames.append(cv2.cvtColor(found[1], cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


class FrameClock:
    """When frames were reported done: by on_progress in one process, by the workers' progress messages on Ray
    (the driver's ray_run._keep, wrapped here), so that the rate once frames flow leaves the start-up out."""

    def __init__(self):
        self.times: list[tuple[float, int]] = []
        keep = ray_run._keep

        def counted(event, job, bar):
            if event[0] == "frames":
                self.times.append((time.perf_counter(), event[1]))
            keep(event, job, bar)

        ray_run._keep = counted

    def frame(self, _progress) -> None:
        self.times.append((time.perf_counter(), 1))

    def running_fps(self) -> float:
        """Frames after the first report, over the time from the first report to the last."""
        if len(self.times) < 2:
            return float("nan")
        (first, _), (last, _) = self.times[0], self.times[-1]
        return sum(n for _, n in self.times[1:]) / (last - first)


def timed(input: Path, output: Path, clock: FrameClock, **settings) -> tuple[float, float]:
    """Wall-clock seconds, and frames per second once frames flow."""
    clock.times = []
    began = time.perf_counter()
    if settings.get("ray") is None:
        settings["on_progress"] = clock.frame
    vidiff.stylize_video(input, output, **settings)
    return time.perf_counter() - began, clock.running_fps()


def pair_warp_errors(sources: list[np.ndarray], stylized: list[np.ndarray]) -> dict[int, float]:
    """Frame t -> the warp error of the pair (t - 1, t)."""
    errors = {}
    for t in range(1, min(len(sources), len(stylized))):
        flow, trusted = backward_flow(sources[t - 1], sources[t])
        found = pair_errors(stylized[t - 1], stylized[t], flow, trusted)
        if found is not None:
            errors[t] = found.warp_error
    return errors


def seam_figures(errors: dict[int, float], seams: list[int]) -> tuple[float, float]:
    at = [errors[t] for t in seams if t in errors]
    within = [value for t, value in errors.items() if t not in seams]
    return float(np.mean(at)), float(np.mean(within))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated (default 1,2)")
    parser.add_argument("--frames", type=int, default=96, help="frames of the two-shot clip")
    parser.add_argument("--seam-frames", type=int, default=144, help="frames of the one-shot pan cut into chunks")
    parser.add_argument("--warmups", default="0,4,8,16", help="chunk warm-ups to measure the seams of")
    parser.add_argument("--size", default="256x192", help="frame size, WxH (DIS flow is poor on tiny frames)")
    parser.add_argument("--model", default=str(TRAINED))
    parser.add_argument("--ray", default="local", help="local (a Ray started here), auto, or a cluster's address")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the single-process run")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep", type=Path, default=None, help="keep the clips and outputs in this folder")
    args = parser.parse_args(argv)
    import ray

    logging.getLogger("vidiff").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)  # diffusers' deprecation notes, not ours
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    width, height = (int(n) for n in args.size.split("x"))
    counts = [int(n) for n in args.workers.split(",")]
    warmups = [int(n) for n in args.warmups.split(",")]
    folder = args.keep or Path(tempfile.mkdtemp(prefix="vidiff-ray-"))
    folder.mkdir(parents=True, exist_ok=True)
    settings = dict(SETTINGS, model=args.model, max_side=max(width, height), **PRESET_STACK)

    # 1. Speed: the plain run, then each worker count
    two_shots = write_frames(folder / "two-shots.mp4", cut_frames((width, height), args.frames))
    clock = FrameClock()
    plain_seconds, plain_running = timed(two_shots, folder / "plain.mp4", clock, **settings)
    plain = decoded(folder / "plain.mp4")
    began = time.perf_counter()
    local = args.ray == "local"
    ray.init(address="local" if local else args.ray, num_cpus=max(counts) if local else None,
             include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)  # fmt: skip
    ray_start = time.perf_counter() - began
    speed = [dict(run="single process", workers=0, seconds=plain_seconds, running_fps=plain_running, same=True)]
    for count in counts:
        out = folder / f"ray-{count}.mp4"
        seconds, running = timed(two_shots, out, clock, ray=args.ray, workers=count, **settings)
        frames = decoded(out)
        same = len(frames) == len(plain) and all(np.array_equal(a, b) for a, b in zip(frames, plain))
        speed.append(dict(run=f"Ray, {count} worker(s)", workers=count, seconds=seconds, running_fps=running,
                          same=same))  # fmt: skip
    for row in speed:
        row["fps"] = args.frames / row["seconds"]
        print(json.dumps({"benchmark": "ray-speed", **row}))

    # 2. Seams: one shot in chunks, each warm-up, against the same shot unchunked
    sources = pan_frames((width, height), args.seam_frames)
    pan = write_frames(folder / "pan.mp4", sources)
    seams = list(range(SEGMENT_FRAMES, args.seam_frames, SEGMENT_FRAMES))
    whole = folder / "pan-whole.mp4"
    vidiff.stylize_video(pan, whole, **settings)
    at, within = seam_figures(pair_warp_errors(sources, decoded(whole)), seams)
    seam_rows = [dict(run="one shot, no chunks", warmup=None, at_seams=at, within=within)]
    for warmup in warmups:
        out = folder / f"pan-warmup-{warmup}.mp4"
        vidiff.stylize_video(pan, out, ray=args.ray, workers=max(counts), chunk=SEGMENT_FRAMES, chunk_warmup=warmup,
                             **settings)  # fmt: skip
        at, within = seam_figures(pair_warp_errors(sources, decoded(out)), seams)
        seam_rows.append(dict(run=f"chunks of {SEGMENT_FRAMES}, warm-up {warmup}", warmup=warmup, at_seams=at,
                              within=within))  # fmt: skip
    for row in seam_rows:
        row["ratio"] = row["at_seams"] / row["within"]
        print(json.dumps({"benchmark": "ray-seams", **row}))
    ray.shutdown()

    write_section(args.out, report(args, speed, seam_rows, ray_start, seams, (width, height)), "ray")
    print(f"tables written to {args.out}")
    return 0


def report(args, speed: list[dict], seams: list[dict], ray_start: float, seam_frames: list[int], size) -> str:
    one = next((row for row in speed if row["workers"] == 1), None)
    plain = speed[0]
    lines = [
        "<!-- ray:begin -->",
        "## Many workers: Ray scaling and chunk seams (`benchmarks/ray_scaling.py`)",
        "",
        f"Measured {datetime.date.today().isoformat()} on {machine(torch.device('cpu'))}; vidiff {revision()}; "
        f"model `{Path(args.model).name}`, {size[0]}x{size[1]}, {SETTINGS['steps']} steps, the wooden-carving "
        f"preset's temporal stack; Ray `{args.ray}` (its start, {ray_start:.1f} s, is not in the times).",
        "",
        f"`{' '.join(shlex.quote(a) for a in ['python', 'benchmarks/ray_scaling.py', *(sys.argv[1:])])}`",
        "",
        f"### Speed: a two-shot clip of {args.frames} frames",
        "",
        "Seconds and frames/s are wall-clock, loading the model (once per worker, each in a new process) "
        "included; *running* is the rate from the first frames reported to the last, the start-up left out.",
        "",
        "| run | seconds | frames/s | running frames/s | × 1 worker (wall, running) | × single process (wall, "
        "running) | frames equal the single process |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in speed:
        against_one = (f"{row['fps'] / one['fps']:.2f}, {row['running_fps'] / one['running_fps']:.2f}"
                       if one and row["workers"] else "–")  # fmt: skip
        against_plain = f"{row['fps'] / plain['fps']:.2f}, {row['running_fps'] / plain['running_fps']:.2f}"
        lines.append(f"| {row['run']} | {row['seconds']:.1f} | {row['fps']:.2f} | {row['running_fps']:.2f} | "
                     f"{against_one} | {against_plain} | {'yes' if row['same'] else 'NO'} |")  # fmt: skip
    two = next((row for row in speed if row["workers"] == 2), None)
    if one and two:
        wall, running = two["fps"] / one["fps"], two["running_fps"] / one["running_fps"]
        verdict = "met" if wall >= TARGET_SPEEDUP else "met once running" if running >= TARGET_SPEEDUP else "missed"
        lines += ["", f"Target 2 workers ≥ {TARGET_SPEEDUP}× one worker: {verdict} ({wall:.2f}× wall-clock, "
                      f"{running:.2f}× running)."]  # fmt: skip
    lines += [
        "",
        f"### Seams: a one-shot pan of {args.seam_frames} frames in chunks (seams at frames "
        f"{', '.join(map(str, seam_frames))})",
        "",
        "| run | warp error across seams | within the shot | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in seams:
        lines.append(f"| {row['run']} | {row['at_seams']:.2f} | {row['within']:.2f} | {row['ratio']:.2f} |")
    lines += ["", f"Target: seams within {TARGET_SEAM}× of the within-shot warp error.", "<!-- ray:end -->", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
