"""Training speed of `vidiff train`: steps per second and peak memory, on the SD 1.5 architecture with
random weights (the FLOPs and memory of the real model, see architectures.py), at 256² and 512².

    python benchmarks/train_speed.py                                   # SD 1.5, CPU, 256² and 512²
    python benchmarks/train_speed.py --device cuda --steps 30          # a GPU: fp16 autocast, gradient checkpointing
    python benchmarks/train_speed.py --device cuda --steps 30 --no-gradient-checkpointing --batch-size 4
    python benchmarks/train_speed.py --model tiny --sizes 64 --steps 3 --out /tmp/RESULTS.md   # a smoke run

One process, the model built once per size. Each size trains on 8 synthetic pictures of that size
through the same code `vidiff train` runs (vidiff.train: the data set's batches, crops and flips,
then Trainer.step: VAE encode, noise, UNet forward and backward, AdamW on the LoRA), default
settings unless given (rank 16, batch 1, the UNet's attention only). The first `--warmup` steps are
not timed. Reported: steps per second, pictures per second, peak RSS and peak GPU memory (from the
start of training: the loaded model included). One JSON line per run goes to stdout and is kept in
train_speed.jsonl (a run with the same settings replaces its earlier line); the table in RESULTS.md
(section train-speed) is written from all of them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import architectures  # noqa: E402
from report import machine, revision, write_section  # noqa: E402
from throughput import Peaks  # noqa: E402

from vidiff.models.device import _placed, resolve_device, resolve_dtype  # noqa: E402
from vidiff.train.config import TrainConfig  # noqa: E402
from vidiff.train.data import DataSet, bucketed, scan_folder  # noqa: E402
from vidiff.train.loop import Trainer  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = HERE / "train_speed.jsonl"


def pictures(folder: Path, size: int, count: int = 8) -> Path:
    rng = np.random.default_rng(0)
    for index in range(count):
        picture = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"{index}.png"), picture)
    return folder


def measure(args, size: int) -> dict:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    parts = _placed(architectures.build(args.model), device, dtype)
    config = TrainConfig(model=args.model, token="<style>", steps=args.warmup + args.steps, rank=args.rank,
                         batch_size=args.batch_size, resolution=size, text_encoder=args.text_encoder,
                         gradient_checkpointing=args.gradient_checkpointing, device=args.device,
                         dtype=args.dtype).validate()  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        grid = 8 * 2 ** (len(parts.unet.config.block_out_channels) - 1)
        data = DataSet(bucketed(scan_folder(pictures(Path(folder), size), "<style>"), size, grid),
                       args.batch_size, 1, 0, True)  # fmt: skip
        with Peaks(device) as peaks:
            trainer = Trainer(parts, config)
            for step in range(args.warmup):
                trainer.step(data.batch(step), step)
            _sync(device)
            began = time.perf_counter()
            losses = [trainer.step(data.batch(step), step) for step in range(args.warmup, config.steps)]
            _sync(device)
            seconds = time.perf_counter() - began
    return {
        "model": args.model, "device": device.type, "dtype": str(dtype).removeprefix("torch."), "size": size,
        "batch_size": args.batch_size, "rank": args.rank, "text_encoder": args.text_encoder,
        "gradient_checkpointing": trainer_checkpointing(config, device), "steps": args.steps,
        "steps_per_s": args.steps / seconds, "pictures_per_s": args.steps * args.batch_size / seconds,
        "peak_rss_mb": peaks.rss_mb, "peak_gpu_mb": peaks.gpu_mb, "final_loss": losses[-1],
        "machine": machine(device), "revision": revision(), "date": datetime.date.today().isoformat(),
        "command": "python " + " ".join(sys.argv),
    }  # fmt: skip


def trainer_checkpointing(config: TrainConfig, device: torch.device) -> bool:
    return device.type == "cuda" if config.gradient_checkpointing is None else config.gradient_checkpointing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


KEY = ("model", "device", "dtype", "size", "batch_size", "rank", "text_encoder", "gradient_checkpointing")


def keep(run: dict, path: Path) -> list[dict]:
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    runs = [r for r in runs if tuple(r[k] for k in KEY) != tuple(run[k] for k in KEY)] + [run]
    path.write_text("".join(json.dumps(r) + "\n" for r in runs))
    return runs


def table(runs: list[dict]) -> str:
    lines = [
        "<!-- train-speed:begin -->",
        "## Training speed (`vidiff train`, `benchmarks/train_speed.py`)",
        "",
        "A LoRA (rank, batch) on the UNet's attention of the architecture named, random weights; steps per second",
        "after warm-up steps, peak memory while training, the loaded model included.",
        "",
        "| model | device | dtype | size | batch | rank | text enc. | grad. ckpt | steps/s | pictures/s | peak RSS MB | peak GPU MB | machine | date, commit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: (r["model"], r["device"], r["size"], r["batch_size"])):
        gpu = f"{r['peak_gpu_mb']:.0f}" if r["peak_gpu_mb"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['device']} | {r['dtype']} | {r['size']}² | {r['batch_size']} | {r['rank']} | "
            f"{'yes' if r['text_encoder'] else 'no'} | {'yes' if r['gradient_checkpointing'] else 'no'} | "
            f"{r['steps_per_s']:.3g} | {r['pictures_per_s']:.3g} | {r['peak_rss_mb']:.0f} | {gpu} | {r['machine']} | "
            f"{r['date']}, {r['revision']} |"
        )
    lines += ["", "Commands: " + "; ".join(sorted({f"`{r['command']}`" for r in runs})), "<!-- train-speed:end -->", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sd15", choices=architectures.ARCHITECTURES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--text-encoder", action="store_true")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's own)")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--runs", type=Path, default=RUNS, help="the JSON lines kept between runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for size in args.sizes:
        run = measure(args, size)
        print(json.dumps(run), flush=True)
        write_section(args.out, table(keep(run, args.runs)), "train-speed")


if __name__ == "__main__":
    main()
