"""Throughput: the loop a diffusers user writes against vidiff, on the same frames, model and settings.

    python benchmarks/throughput.py                                   # tiny model, CPU
    python benchmarks/throughput.py --model sd15 --size 256 --frames 3 --steps 50   # SD 1.5 architecture, CPU
    python benchmarks/throughput.py --model sd15 --size 512 --device cuda --dtype fp16 --frames 64
    python benchmarks/throughput.py --model sd15 --size 512 --device cuda --dtype fp16 --scheduler lcm \\
        --steps 8 --strength 0.5 --guidance 1 --vae tiny
    python benchmarks/throughput.py --model sd-turbo --steps 1 --strength 1 --guidance 0 --vae tiny ...
    python benchmarks/throughput.py --memory                          # peak RSS: 100 frames against 1,000
    python benchmarks/throughput.py --model sd15-motion --size 512 --device cuda --dtype fp16 --frames 64 \
        --steps 25 --scheduler ddim --skip-naive                   # SD 1.5 + motion module, 16-frame windows

One process, one model built once (random weights from the published architecture: the FLOPs and
memory of the real model, see architectures.py). (a) naive: StableDiffusionImg2ImgPipeline called
per frame with a PIL frame, the prompt strings and a fresh seeded generator, frames read with
OpenCV and written with imageio-ffmpeg; (b) vidiff.stylize_video. Both runs are timed whole:
decoding, the model, encoding. Each is preceded by an untimed one-frame warm-up. Reported: frames
per second of each and the ratio, peak RSS and peak GPU memory of each, the largest pixel
difference between the two outputs (first frames, before video encoding), FLOPs per frame (counted
with torch.utils.flop_counter on one vidiff frame) and the model FLOP utilisation: FLOPs per frame ×
vidiff's frames per second / the device's peak.

One JSON line per run goes to stdout and is kept in throughput.jsonl (a run with the same model,
device, size and settings replaces its earlier line); the table in RESULTS.md is written from all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import architectures  # noqa: E402
from report import machine, revision, write_section  # noqa: E402

import vidiff  # noqa: E402
from vidiff.models.device import resolve_device, resolve_dtype  # noqa: E402
from vidiff.models.parts import ModelParts  # noqa: E402
from vidiff.pipelines.samplers import SCHEDULERS, make_scheduler  # noqa: E402
from vidiff.pipelines.img2img import Img2ImgProcessor  # noqa: E402
from vidiff.io.ffmpeg import ffmpeg_exe  # noqa: E402

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
RUNS = HERE / "throughput.jsonl"
PROMPT, NEGATIVE = "a wooden carving, visible grain", "blurry"

# dense tensor-core peaks from the vendors' data sheets (FLOP/s); fp32 is the non-tensor-core rate
GPU_PEAKS = {
    ("H100", "half"): 989.4e12, ("H100 PCIe", "half"): 756.5e12, ("H200", "half"): 989.4e12,
    ("A100", "half"): 312e12, ("H100", "fp32"): 66.9e12, ("H200", "fp32"): 66.9e12, ("A100", "fp32"): 19.5e12,
}  # fmt: skip


@dataclass
class Result:
    model: str
    device: str
    dtype: str
    size: str
    frames: int
    settings: str
    naive_fps: float | None
    vidiff_fps: float
    ratio: float | None
    naive_peak_rss_mb: float | None
    vidiff_peak_rss_mb: float
    naive_peak_gpu_mb: float | None
    vidiff_peak_gpu_mb: float | None
    max_pixel_diff: int | None
    flops_per_frame: float
    peak_flops: float
    peak_source: str
    mfu: float
    machine: str
    revision: str
    date: str

    def key(self) -> tuple:
        return (self.model, self.device, self.dtype, self.size, self.settings)


# --- memory ---


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux: clear_refs 5)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Peaks:
    """Peak RSS and peak GPU memory over a `with` block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.rss_mb = 0.0
        self.gpu_mb: float | None = None

    def __enter__(self) -> "Peaks":
        reset_peak_rss()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.gpu_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        self.rss_mb = peak_rss_mb()


# --- the clip and the two loops ---


def make_clip(path: Path, size: tuple[int, int], frames: int, fps: int = 24) -> Path:
    """A synthetic clip at exactly the processing size, so neither side resizes."""
    width, height = size
    command = [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}",
               "-frames:v", str(frames), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", str(path)]  # fmt: skip
    subprocess.run(command, check=True)
    return path


def naive_pipeline(parts: ModelParts, scheduler: str):
    from diffusers import StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=make_scheduler(scheduler, parts.scheduler_config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_naive(pipe, source: Path, output: Path, args, keep: int, limit: int | None = None) -> tuple[int, list]:
    """The loop a diffusers user writes: OpenCV in, the pipeline per frame, imageio-ffmpeg out."""
    import imageio_ffmpeg
    from PIL import Image

    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = imageio_ffmpeg.write_frames(str(output), (width, height), fps=fps, macro_block_size=1,
                                         ffmpeg_log_level="error")  # fmt: skip
    writer.send(None)
    kept, count = [], 0
    try:
        while limit is None or count < limit:
            ok, bgr = capture.read()
            if not ok:
                break
            image = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            result = pipe(
                prompt=PROMPT, negative_prompt=NEGATIVE, image=image, strength=args.strength,
                num_inference_steps=args.steps, guidance_scale=args.guidance,
                generator=torch.Generator("cpu").manual_seed(args.seed),
            ).images[0]  # fmt: skip
            frame = np.asarray(result)
            writer.send(np.ascontiguousarray(frame))
            if len(kept) < keep:
                kept.append(frame)
            count += 1
    finally:
        writer.close()
        capture.release()
    return count, kept


def vidiff_config(args, size: tuple[int, int], **overrides) -> vidiff.Config:
    settings = dict(
        prompt=PROMPT, negative_prompt=NEGATIVE, strength=args.strength, steps=args.steps, guidance=args.guidance,
        scheduler=args.scheduler, seed=args.seed, noise="fixed", blend=0.0, flow_blend=0.0, color_match=False,
        cross_frame_attn=False, max_side=max(size), overwrite=True, model=args.model,
        motion_adapter=getattr(args, "motion_adapter", None),
    )  # fmt: skip
    settings.update(vidiff_options(args))
    settings.update(overrides)
    return vidiff.Config(**settings)


def vidiff_options(args) -> dict:
    """The fast-path options given on the command line, as Config fields."""
    wanted = {"batch_size": args.batch_size, "vae": args.vae_path or args.vae, "compile": args.compile}
    return {name: value for name, value in wanted.items() if value is not None}


def flops_per_frame(parts: ModelParts, config: vidiff.Config, frame: np.ndarray) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    if parts.motion_adapter is not None:  # a shot's first window, per frame
        from vidiff.pipelines.motion import MotionProcessor

        with FlopCounterMode(display=False) as counter:
            MotionProcessor(parts, config).process([frame] * config.context, 0)
        return float(counter.get_total_flops()) / config.context
    with Img2ImgProcessor(parts, config) as stylizer, FlopCounterMode(display=False) as counter:
        stylizer(frame, 0)
    return float(counter.get_total_flops())


def device_peak(device: torch.device, dtype: torch.dtype) -> tuple[float, str]:
    """The device's peak FLOP/s: the data sheet's for known GPUs, a measured matmul rate on a CPU."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        kind = "half" if dtype in (torch.float16, torch.bfloat16) else "fp32"
        for (model, k), peak in sorted(GPU_PEAKS.items(), key=lambda item: -len(item[0][0])):
            if model in name and k == kind:
                return peak, f"{model} {kind} data sheet (dense)"
    size, reps = 1024, 8
    a, b = torch.randn(size, size, dtype=dtype, device=device), torch.randn(size, size, dtype=dtype, device=device)
    torch.matmul(a, b)
    began = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - began
    return 2 * size**3 * reps / seconds, f"measured {size}² matmul, {torch.get_num_threads()} threads"


# --- the table ---


def load_runs() -> list[dict]:
    if not RUNS.exists():
        return []
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line.strip()]


def save_run(result: Result) -> list[dict]:
    runs = [r for r in load_runs() if Result(**r).key() != result.key()] + [asdict(result)]
    RUNS.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return runs


def table(runs: list[dict]) -> str:
    def cell(value, digits=2, suffix="") -> str:
        return "–" if value is None else f"{value:.{digits}f}{suffix}"

    def fps(value) -> str:
        return "–" if value is None else f"{value:.3g}"

    lines = [
        "<!-- throughput:begin -->",
        "## Throughput: naive diffusers loop against vidiff (`benchmarks/throughput.py`)",
        "",
        "Written by the benchmark from `benchmarks/throughput.jsonl`; every row is a measurement on the "
        "machine it names. Both loops are timed whole (decode, model, encode); *max diff* is the largest "
        "pixel difference (0-255) between their first frames; MFU = FLOPs per frame × vidiff frames/s ÷ peak.",
        "",
        "| model | device | size | frames | settings | naive fps | vidiff fps | ratio | max diff | peak RSS naive / vidiff (MB) "
        "| peak GPU naive / vidiff (MB) | GFLOP/frame | MFU | peak used |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        gpu = "–" if r["vidiff_peak_gpu_mb"] is None else f"{cell(r['naive_peak_gpu_mb'], 0)} / {r['vidiff_peak_gpu_mb']:.0f}"
        lines.append(
            f"| {r['model']} {r['dtype']} | {r['device']} | {r['size']} | {r['frames']} | {r['settings']} "
            f"| {fps(r['naive_fps'])} | {fps(r['vidiff_fps'])} | {cell(r['ratio'], 2, '×')} "
            f"| {'–' if r['max_pixel_diff'] is None else r['max_pixel_diff']} "
            f"| {cell(r['naive_peak_rss_mb'], 0)} / {r['vidiff_peak_rss_mb']:.0f} | {gpu} "
            f"| {r['flops_per_frame'] / 1e9:.1f} | {100 * r['mfu']:.2f}% | {r['peak_source']} |"
        )
    machines = sorted({f"{r['machine']} (revision {r['revision']}, {r['date']})" for r in runs})
    lines += ["", "Machines:", *[f"- {m}" for m in machines], "<!-- throughput:end -->", ""]
    return "\n".join(lines)


# --- memory flat in length ---


def memory_child(frames: int, size: tuple[int, int]) -> float:
    """Stylise a `frames`-frame clip with the tiny model; return the process's peak RSS in MB."""
    with tempfile.TemporaryDirectory() as scratch:
        source = make_clip(Path(scratch) / "source.mp4", size, frames)
        reset_peak_rss()
        vidiff.stylize_video(source, Path(scratch) / "out.mp4", prompt=PROMPT, model="tiny", steps=4, strength=0.5,
                             guidance=1.0, max_side=max(size), device="cpu")  # fmt: skip
    return peak_rss_mb()


def memory_section(lengths: list[int], size: tuple[int, int]) -> tuple[str, list[dict]]:
    rows = []
    for frames in lengths:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(frames), "--size", f"{size[0]}x{size[1]}",
                              *(["--threads", str(torch.get_num_threads())])],
                             check=True, capture_output=True, text=True)  # fmt: skip
        peak = float(out.stdout.strip().splitlines()[-1])
        rows.append({"frames": frames, "peak_rss_mb": peak})
        print(json.dumps({"memory": rows[-1]}), flush=True)
    first, last = rows[0]["peak_rss_mb"], rows[-1]["peak_rss_mb"]
    lines = [
        "<!-- memory:begin -->",
        "## Memory flat in length (`benchmarks/throughput.py --memory`)",
        "",
        f"Peak RSS of a whole `vidiff.stylize_video` process (tiny model, {size[0]}x{size[1]}, 2 steps, CPU), "
        "each length in a fresh process.",
        "",
        "| frames | peak RSS (MB) |",
        "|---|---|",
        *[f"| {r['frames']} | {r['peak_rss_mb']:.0f} |" for r in rows],
        "",
        f"{rows[-1]['frames']} frames against {rows[0]['frames']}: {100 * (last - first) / first:+.1f}% "
        f"(target: within ±10%). {machine(torch.device('cpu'))}; revision {revision()}; "
        f"{datetime.date.today().isoformat()}.",
        "<!-- memory:end -->",
        "",
    ]
    return "\n".join(lines), rows


# --- the command ---


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height or width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=architectures.ARCHITECTURES, default="tiny")
    parser.add_argument("--size", type=parse_size, default=None, help="WxH or N (default 256x256 for tiny, 512 on GPU)")
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--strength", type=float, default=0.5)
    parser.add_argument("--guidance", type=float, default=7.5)
    parser.add_argument("--scheduler", choices=list(SCHEDULERS), default="pndm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's own)")
    parser.add_argument("--batch-size", type=int, default=None, help="vidiff --batch-size (default vidiff's)")
    parser.add_argument("--vae", default=None, help="vidiff --vae (full, tiny, ...); the naive loop keeps the full VAE")
    parser.add_argument("--compile", action="store_true", default=None, help="vidiff --compile")
    parser.add_argument("--skip-naive", action="store_true", help="time vidiff only (naive too slow at this size)")
    parser.add_argument("--compare", type=int, default=2, help="frames compared pixel by pixel (default 2)")
    parser.add_argument("--no-write", action="store_true", help="print the JSON line only; leave RESULTS.md alone")
    parser.add_argument("--memory", action="store_true", help="measure peak RSS at 100 and 1,000 frames instead")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rewrite-table", action="store_true", help="rewrite RESULTS.md's table from throughput.jsonl")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.rewrite_table:
        write_section(RESULTS, table(load_runs()), "throughput")
        return 0
    if args.memory_child is not None:
        print(memory_child(args.memory_child, args.size or (128, 96)))
        return 0
    if args.memory:
        text, _ = memory_section([100, 1000], args.size or (128, 96))
        if not args.no_write:
            write_section(RESULTS, text, "memory")
        return 0

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    size = args.size or ((512, 512) if device.type == "cuda" else (256, 256))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        args.vae_path = None
        if args.vae == "tiny":  # TAESD's architecture, random weights: nothing to download
            args.vae_path = str(scratch / "taesd")
            architectures.tiny_vae().save_pretrained(args.vae_path)
        parts = architectures.build(args.model)
        args.motion_adapter = parts.motion_adapter
        if parts.motion_adapter is not None:
            args.skip_naive = True  # diffusers' per-frame img2img loop can't run a motion UNet
        for module in (parts.vae, parts.text_encoder, parts.unet):
            module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        parts.device, parts.dtype = device, dtype
        vidiff_parts = parts
        if args.vae_path:  # vidiff with the tiny VAE; the naive loop keeps the full one
            from vidiff.models.adapters import load_vae

            vidiff_parts = dataclasses.replace(parts)
            load_vae(vidiff_parts, args.vae_path, dtype)
            vidiff_parts.vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
            vidiff_parts.vae_source = args.vae_path
        source = make_clip(scratch / "source.mp4", size, args.frames)
        config = vidiff_config(args, size)
        first = cv2.cvtColor(cv2.VideoCapture(str(source)).read()[1], cv2.COLOR_BGR2RGB)

        # untimed: FLOPs per frame, warm-ups, and the outputs compared
        flops = flops_per_frame(vidiff_parts, config, first)
        naive_fps = naive_rss = naive_gpu = max_diff = None
        if not args.skip_naive:
            pipe = naive_pipeline(parts, args.scheduler)
            run_naive(pipe, source, scratch / "warm.mp4", args, keep=0, limit=1)
            with Peaks(device) as naive_peaks:
                began = time.perf_counter()
                count, kept = run_naive(pipe, source, scratch / "naive.mp4", args, keep=args.compare)
                naive_seconds = time.perf_counter() - began
            naive_fps, naive_rss, naive_gpu = count / naive_seconds, naive_peaks.rss_mb, naive_peaks.gpu_mb
        vidiff.stylize_video(source, scratch / "warm.mp4", config, parts=vidiff_parts, max_frames=1)
        with Peaks(device) as vidiff_peaks:
            result = vidiff.stylize_video(source, scratch / "vidiff.mp4", config, parts=vidiff_parts)
        vidiff_fps = result.frames / result.seconds
        if not args.skip_naive:
            frames_dir = scratch / "frames"
            vidiff.stylize_video(source, scratch / "check.mp4", config, parts=vidiff_parts, max_frames=len(kept),
                                 save_frames=str(frames_dir))  # fmt: skip
            ours = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sorted(frames_dir.glob("*.png"))]
            max_diff = int(max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(ours, kept)))

    peak, peak_source = device_peak(device, dtype)
    shown = {**vidiff_options(args), **({"vae": "tiny"} if args.vae_path else {})}
    settings = (f"{args.scheduler} {args.steps} steps × strength {args.strength}, guidance {args.guidance}"
                + "".join(f", {k}={v}" for k, v in shown.items()))  # fmt: skip
    record = Result(
        model=args.model, device=device.type if device.type != "cuda" else torch.cuda.get_device_name(device),
        dtype=str(dtype).removeprefix("torch."), size=f"{size[0]}x{size[1]}", frames=args.frames, settings=settings,
        naive_fps=naive_fps, vidiff_fps=vidiff_fps, ratio=None if naive_fps is None else vidiff_fps / naive_fps,
        naive_peak_rss_mb=naive_rss, vidiff_peak_rss_mb=vidiff_peaks.rss_mb, naive_peak_gpu_mb=naive_gpu,
        vidiff_peak_gpu_mb=vidiff_peaks.gpu_mb, max_pixel_diff=max_diff, flops_per_frame=flops, peak_flops=peak,
        peak_source=peak_source, mfu=flops * vidiff_fps / peak, machine=machine(device), revision=revision(),
        date=datetime.date.today().isoformat(),
    )  # fmt: skip
    print(json.dumps(asdict(record)), flush=True)
    if not args.no_write:
        write_section(RESULTS, table(save_run(record)), "throughput")
    return 0


if __name__ == "__main__":
    sys.exit(main())
