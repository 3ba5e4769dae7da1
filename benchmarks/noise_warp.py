"""Warped noise and long shots (issue 19): fixed against warped noise on pans of many speeds and a
zoom, and the presets' stack, including over a slow 120-frame pan.

    python benchmarks/noise_warp.py [--size WxH] [--out benchmarks/RESULTS.md] [--groups G ...] [--model M]

Stylises each clip in each mode with vidiff.stylize_video on the trained tiny model (as
benchmarks/temporal.py does, whose Bench, settings and metrics it shares), scores it with
vidiff.score.score_video, prints one JSON line per run and writes the tables into the `noise-warp`
section of OUT. Quality figures only: the machine is shared, so no timings are recorded (the cost of
the noise transport per frame is in the README, with the command that measures it).

A benchmark, not a test: nothing here fails when a target is missed; the tables say so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # clips.py, temporal.py, beside this file

from temporal import BASE, DEFAULT_OUT, Bench, Job, describe, load_model, mean, parse_size, vae_floor  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from clips import object_frames, pan_frames, write_frames, zoom_frames  # noqa: E402
from report import machine, revision, write_section  # noqa: E402
from vidiff.pipelines.noise import prepare_noise  # noqa: E402
from vidiff.settings.presets import load_preset  # noqa: E402

SPEEDS = (1, 2, 3, 5, 8, 12)  # px/frame, horizontal; 8 px is one latent pixel
FRAMES, LONG_FRAMES, LONG_STEP = 10, 120, (3, 1)  # the slow long pan: 3/8 and 1/8 of a latent pixel a frame
PRESET = "wooden-carving"  # the presets share their temporal settings; this one's prompt is the benchmark's
TEMPORAL = ("noise", "blend", "flow_blend", "fusion", "fusion_end", "color_match", "cross_frame_attn")


def preset_stack() -> dict:
    """The temporal settings the presets use (the benchmark's own prompt, strength and steps stay)."""
    preset = load_preset(PRESET)
    return {name: preset.settings[name] for name in TEMPORAL if name in preset.settings}


def modes() -> dict[str, dict]:
    stack = preset_stack()
    return {
        "per-frame noise": dict(noise="per-frame"),
        "fixed noise": dict(noise="fixed"),
        "warped noise": dict(noise="warped"),
        "presets' stack": stack,
        "presets' stack, fixed noise": dict(stack, noise="fixed"),  # as the presets were before
    }


GROUPS = ("pans", "zoom", "object", "long")


def clips(group: str, size: tuple[int, int]) -> list[tuple[str, list]]:
    if group == "pans":
        return [(f"pan {speed} px/frame", pan_frames(size, FRAMES, step=(speed, 0))) for speed in SPEEDS]
    if group == "zoom":
        return [("zoom ×1 → ×1.3", zoom_frames(size, FRAMES))]
    if group == "object":
        return [("object, 8 px/frame", object_frames(size, FRAMES))]
    return [(f"slow pan, {LONG_FRAMES} frames", pan_frames(size, LONG_FRAMES, step=LONG_STEP))]


def cell(run, name: str, digits: int = 2) -> str:
    value = run.get(name) if run else None
    return "n/a" if value is None else f"{value:.{digits}f}"


def pct(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base:.0%}"


def ratio(value: float | None, base: float | None) -> str:
    return "n/a" if value is None or not base else f"{value / base:.2f}×"


def tables(results: dict, names: list[str]) -> list[str]:
    """The section's tables from results[(clip, mode)] (Run dicts)."""
    get = lambda clip, mode: results.get((clip, mode))  # noqa: E731
    lines = []
    pans = [c for c, _ in results if c.startswith("pan ")]
    pans = sorted(set(pans), key=lambda c: float(c.split()[1]))
    if pans:
        lines += [
            "### Pans: fixed against warped noise, and the presets' stack",
            "",
            "Target: warped noise's warp error below fixed noise's at every speed, with the same change from the "
            "source (±10%); the presets' stack ≥ 2× steadier than fixed noise, detail ≥ 90% of per-frame noise's. "
            "Cells: warp error ↓ (change from source; detail).",
            "",
            "| clip | VAE round trip (the model's floor) | per-frame noise | fixed noise | warped noise "
            "| warped ÷ fixed warp error | warped ÷ fixed change | presets' stack | fixed ÷ stack warp error "
            "| stack ÷ per-frame detail |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for clip in pans + [c for c in dict.fromkeys(c for c, _ in results) if c.startswith(("zoom", "object"))]:
            per, fixed, warped, stack = (get(clip, m) for m in ("per-frame noise", "fixed noise", "warped noise", "presets' stack"))
            triple = lambda r: f"{cell(r, 'warp_error')} ({cell(r, 'change_from_source', 1)}; {cell(r, 'detail')})"  # noqa: E731
            floor = get(clip, "VAE round trip")
            lines.append(
                f"| {clip} | {cell(floor, 'warp_error')} | {triple(per)} | {triple(fixed)} | {triple(warped)} "
                f"| {ratio(warped and warped['warp_error'], fixed and fixed['warp_error'])} "
                f"| {pct(warped and warped['change_from_source'], fixed and fixed['change_from_source'])} "
                f"| {triple(stack)} | {ratio(fixed and fixed['warp_error'], stack and stack['warp_error'])} "
                f"| {pct(stack and stack['detail'], per and per['detail'])} |"
            )
        lines.append("")
    others = [m for m in names if m not in ("per-frame noise", "fixed noise", "warped noise", "presets' stack", "VAE round trip")]
    if others and pans:
        lines += ["Other modes on the same clips: warp error ↓ (change from source; detail).", "",
                  "| mode | " + " | ".join(pans) + " |", "|---|" + "---:|" * len(pans)]  # fmt: skip
        for mode in others:
            row = [f"{cell(get(c, mode), 'warp_error')} ({cell(get(c, mode), 'change_from_source', 1)}; "
                   f"{cell(get(c, mode), 'detail')})" for c in pans]  # fmt: skip
            lines.append(f"| {mode} | " + " | ".join(row) + " |")
        lines.append("")
    longs = [c for c in dict.fromkeys(c for c, _ in results) if c.startswith("slow pan")]
    for clip in longs:
        lines += [
            f"### {clip[0].upper() + clip[1:]}: does detail fade over a long shot?",
            "",
            f"({LONG_STEP[0]}, {LONG_STEP[1]}) px a frame. Target: detail over the last ten frames ≥ 95% of the "
            "first ten's. Detail and warp error are means over frames 0-9 (first) and the last ten.",
            "",
            "| mode | warp error, first ten | warp error, last ten | detail, first ten | detail, last ten "
            "| last ÷ first detail | change from source |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for mode in names:
            run = get(clip, mode)
            if not run:
                continue
            warp = [v for v in run["series"]["warp_error"] if v is not None]
            det = run["series"]["detail"]
            first, last = mean(det[:10]), mean(det[-10:])
            lines.append(
                f"| {mode} | {mean(warp[:10]):.2f} | {mean(warp[-10:]):.2f} | {first:.2f} | {last:.2f} "
                f"| {pct(last, first)} | {run['change_from_source']:.1f} |"
            )
        lines.append("")
    return lines


def cost(frames: int = 10) -> int:
    """Print the time `prepare_noise` takes a frame at 512x512 on a pan and a zoom (printed, never recorded)."""
    ys, xs = np.mgrid[0:512, 0:512].astype(np.float32)
    flows = {
        "pan (3, 1) px/frame": np.stack([np.full_like(xs, -3.0), np.full_like(ys, -1.0)], -1),
        "zoom 3%/frame": np.stack([(xs - 256) * -0.03, (ys - 256) * -0.03], -1).astype(np.float32),
    }
    latents, trusted, prev = torch.zeros(1, 4, 64, 64), np.ones((512, 512), bool), torch.randn(1, 4, 64, 64)
    for name, flow in flows.items():
        began = time.perf_counter()
        for index in range(1, frames + 1):
            prepare_noise(latents, torch.Generator().manual_seed(0), index, 0, "warped", prev, flow, trusted)
        print(f"warped noise, {name}: {(time.perf_counter() - began) / frames * 1000:.1f} ms a frame at 512x512, "
              f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="WIDTHxHEIGHT (default 256x192)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--model", default=None, help="as benchmarks/temporal.py's (default vidiff/models/tiny_trained)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=list(GROUPS), help="which clips (default all)")
    parser.add_argument("--modes", nargs="+", default=None, metavar="MODE", help="which modes (default all)")
    parser.add_argument("--cost", action="store_true",
                        help="only print what warped noise costs a frame at 512x512 (a pan, a zoom), and exit")  # fmt: skip
    parser.add_argument("--results", type=Path, default=None,
                        help="a JSON-lines file of earlier results to add to (runs already in it are not rerun)")  # fmt: skip
    args = parser.parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *given])

    logging.getLogger("vidiff").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    torch.set_num_threads(1)
    if args.cost:
        return cost()
    parts = load_model(args.model, args.device)
    table = modes()
    names = args.modes or list(table)
    results: dict = {}
    if args.results and args.results.exists():
        for line in args.results.read_text().splitlines():
            run = json.loads(line)
            results[(run["clip"], run["mode"])] = run
    with tempfile.TemporaryDirectory(prefix="vidiff-noise-warp-") as scratch:
        bench = Bench(parts, args.size, Path(scratch), keep=False)
        for group in args.groups:
            for clip, frames in clips(group, args.size):
                source = write_frames(Path(scratch) / "source.mp4", frames)
                if group != "long" and (clip, "VAE round trip") not in results:
                    results[(clip, "VAE round trip")] = vae_floor(parts, frames)
                for mode in names:
                    if (clip, mode) in results:
                        continue
                    run = bench.run(source, clip, Job(group, mode, table[mode])).__dict__
                    results[(clip, mode)] = run
                    print(json.dumps({k: v for k, v in run.items() if k != "series"}), flush=True)
                    if args.results:
                        with args.results.open("a") as out:
                            out.write(json.dumps(run) + "\n")
                bench.cache.clear()  # the next clip reuses the file name
    shown = [m for m in table if any(mode == m for _, mode in results)]
    # the pans' mean: the targets are about the set of pans
    pans = [clip for clip, mode in results if clip.startswith("pan ") and mode == "fixed noise"]
    summary = []
    if pans and all((c, m) in results for c in pans for m in ("per-frame noise", "fixed noise", "warped noise", "presets' stack")):
        STACK = "presets' stack"
        avg = lambda mode, key: mean([results[(c, mode)][key] for c in pans])  # noqa: E731
        summary = [
            f"Means over the {len(pans)} pans: warp error per-frame noise {avg('per-frame noise', 'warp_error'):.2f}, fixed "
            f"{avg('fixed noise', 'warp_error'):.2f}, warped {avg('warped noise', 'warp_error'):.2f}, presets' stack "
            f"{avg(STACK, 'warp_error'):.2f} ({avg('fixed noise', 'warp_error') / avg(STACK, 'warp_error'):.2f}× "
            f"steadier than fixed noise, target 2×); detail per-frame noise {avg('per-frame noise', 'detail'):.2f}, presets' "
            f"stack {avg(STACK, 'detail'):.2f} ({avg(STACK, 'detail') / avg('per-frame noise', 'detail'):.0%}, "
            "target 90%).",
            "",
        ]
    settings = ", ".join(f"{k} {v}" for k, v in BASE.items() if k in ("strength", "steps", "guidance", "scheduler", "seed"))
    text = "\n".join(
        [
            "<!-- noise-warp:begin -->",
            f"## Warped noise and long shots (model `{parts.name}`{describe(parts.name)})",
            "",
            "Written by `benchmarks/noise_warp.py`; everything between the markers is replaced on each run.",
            "",
            f"- **Command:** `{command}`",
            f"- **Machine:** {machine(parts.device)}; vidiff at {revision()}. Quality figures only (no timings: a shared machine).",
            f"- **Clips** (benchmarks/clips.py): {args.size[0]}x{args.size[1]}; pans of the pan clip's picture at "
            f"{', '.join(map(str, SPEEDS))} px/frame, {FRAMES} frames; the zoom and object clips, {FRAMES} frames; a slow pan of "
            f"{LONG_FRAMES} frames.",
            f"- **Settings:** {settings}; prompt as benchmarks/temporal.py. Modes: "
            + "; ".join(f"{m}: `{', '.join(f'{k}={v}' for k, v in table[m].items())}`" for m in shown)
            + f" (the presets' stack is {PRESET}.toml's temporal settings).",
            "- **Metrics:** as benchmarks/temporal.py's: warp error (0-255, lower is steadier), change from source, detail.",
            "",
            *tables(results, shown),
            *summary,
            "<!-- noise-warp:end -->",
            "",
        ]
    )
    write_section(args.out, text, "noise-warp")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
