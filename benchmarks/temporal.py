"""Temporal-consistency benchmark: each anti-flicker mode on synthetic clips with known motion.

    python benchmarks/temporal.py [--frames N] [--size WxH] [--out benchmarks/RESULTS.md] [--extras] [--model M]

In one process: draw the clips (benchmarks/clips.py), load the model once, stylise every clip in
every mode with vidiff.stylize_video, score each result against its source with
vidiff.score.score_video, print one JSON line per (clip, mode) run, and write the tables into the
section of OUT between the markers below (the rest of OUT is kept as it is).

The model is vidiff/models/tiny_trained unless --model names another: the tiny architecture trained
offline on CPU by benchmarks/train_tiny.py (about 10 minutes; this script trains it first if the folder
is missing), so that it reproduces its input and restyles it ("a wooden carving") with detail that
depends on the noise, as a real model does. `--model tiny` is the random tiny model, whose output is
its noise; on a GPU machine with weights at hand,
`--model stable-diffusion-v1-5/stable-diffusion-v1-5 --size 512x384` runs the same benchmark on a real one.

A benchmark, not a test: nothing here fails when a target is missed; the tables say so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import shlex
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

# offline unless the caller says otherwise: the tiny model needs no hub, and a real one is read from the cache
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # clips.py, beside this file

import numpy as np  # noqa: E402
import torch  # noqa: E402

import vidiff  # noqa: E402
from clips import CLIPS, OBJECT_STEP, PAN_STEP, ZOOM_END, clip_frames, pan_frames, write_frames  # noqa: E402
from report import machine, revision, write_section  # noqa: E402
from train_tiny import DEFAULT_OUT as TRAINED  # noqa: E402
from vidiff.models.tiny import TINY  # noqa: E402
from vidiff.temporal.change import is_cut  # noqa: E402
from vidiff.temporal.flow import backward_flow  # noqa: E402
from vidiff.score import detail, pair_errors, score_video  # noqa: E402
from vidiff.pipelines.img2img import Img2ImgProcessor  # noqa: E402

BEGIN, END = "<!-- temporal:begin -->", "<!-- temporal:end -->"
DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"
ROOT = Path(__file__).resolve().parent.parent

# the settings every run shares; the modes change only the temporal fields
BASE = dict(
    prompt="a wooden carving, hand-carved from walnut, visible wood grain",
    negative_prompt="photo, blurry, low quality",
    model=os.path.relpath(TRAINED, ROOT),
    strength=0.55,
    steps=10,
    guidance=7.5,
    scheduler="dpm++2m-karras",
    seed=1234,
    crf=4,  # nearly lossless, so the codec neither adds flicker nor smooths it away
    overwrite=True,
)
BLEND, FLOW_BLEND = 0.2, 0.4  # the README's example blend; flow_blend as the presets had it when the table was first measured
FUSION = 1.0  # latent fusion's weight, with vidiff's default fusion_end (the first half of each frame's steps)
# every temporal technique off; a mode turns on what it names
OFF = dict(noise="fixed", blend=0.0, flow_blend=0.0, fusion=0.0, color_match=False, cross_frame_attn=False)

# The modes of the issue, in its order: the Config fields each sets.
MODES: dict[str, dict] = {
    "per-frame noise": dict(noise="per-frame"),
    "fixed noise": dict(noise="fixed"),
    "fixed + blend": dict(noise="fixed", blend=BLEND),
    "flow-blend": dict(noise="fixed", flow_blend=FLOW_BLEND),
    "flow-blend + colour": dict(noise="fixed", flow_blend=FLOW_BLEND, color_match=True),
    "+ cross-frame attn": dict(noise="fixed", flow_blend=FLOW_BLEND, color_match=True, cross_frame_attn=True),
    # not in the list: Rerender-A-Video's cross-frame latent fusion, vidiff's --fusion
    "+ latent fusion": dict(noise="fixed", flow_blend=FLOW_BLEND, color_match=True, cross_frame_attn=True, fusion=FUSION),
    "warped noise": dict(noise="warped"),
    # the four techniques together, as "everything on" was before latent fusion
    "everything on but fusion": dict(noise="warped", flow_blend=FLOW_BLEND, color_match=True, cross_frame_attn=True),
    # every technique; latent blend stays off (it smears motion; flow-blend and fusion follow it)
    "everything on": dict(noise="warped", flow_blend=FLOW_BLEND, color_match=True, cross_frame_attn=True, fusion=FUSION),
}
# With --motion-adapter: AnimateDiff motion windows (their own technique: the per-frame ones stay off).
# On the tiny model with --motion-adapter tiny (a random MotionAdapter) these rows say only that the
# windows run and stream: a random motion module knows no motion, so its numbers say nothing about a
# trained one's (guoyww/animatediff-motion-adapter-v1-5-3 on SD 1.5 at 512x384 on a GPU would).
MOTION_MODES: dict[str, dict] = {
    "motion windows (8, overlap 2)": dict(context=8, context_overlap=2),
    "motion windows (8, no overlap)": dict(context=8, context_overlap=0),
}
FULL, PER_FRAME, FIXED, WARPED = "everything on", "per-frame noise", "fixed noise", "warped noise"
NO_FUSION = "everything on but fusion"

# The targets: the full stack cuts the warp error ≥ 3× against per-frame noise and ≥ 1.5×
# against fixed noise, while its change from the source stays ≥ 80% of per-frame noise's.
TARGET_VS_PER_FRAME, TARGET_VS_FIXED, TARGET_CHANGE = 3.0, 1.5, 0.8

# THREADS_NOTE: one torch thread by default. The tiny model's tensors are small, so a second thread
# gains little (measured on 2 cores: about 1.5 s a 10-frame run with two threads while the machine was
# quiet), while with another torch process on the same cores (a test suite) two threads spin-wait on
# each other: 30-85 s a run, against 2.1-2.3 s with one thread beside the same test suite.

# Extras: pans at these speeds (px/frame, horizontal); 8 px is one latent pixel of SD's 8× VAE
PAN_SPEEDS = (2, 4, 8, 12, 16)
# Extras: longer clips, to see whether anything builds up over a shot (drift, fading detail)
LONG_FRAMES, LONG_CLIPS = 30, ("pan", "zoom")
LONG_MODES = (PER_FRAME, FIXED, NO_FUSION, FULL)


@dataclass(frozen=True)
class Job:
    group: str  # "modes" for the table, else the extra's group
    label: str
    settings: dict


def jobs(extras: bool, modes: list[str]) -> list[Job]:
    """The runs on each clip: the issue's modes, then (with extras) the settings variations."""
    plan = [Job("modes", mode, MODES[mode]) for mode in modes]
    if not extras:
        return plan
    full = MODES[FULL]
    for strength in (0.3, 0.4, 0.7):
        for mode in (PER_FRAME, FIXED, WARPED, FULL):
            plan.append(Job("strength", f"{mode} @ strength {strength}", {**MODES[mode], "strength": strength}))
    for weight in (0.5, 1.0):
        for end in (0.3, 0.5, 0.8):
            plan.append(Job("fusion", f"everything on, fusion {weight}, fusion_end {end}",
                            {**full, "fusion": weight, "fusion_end": end}))  # fmt: skip
    plan.append(Job("fusion", "fixed noise + fusion 1.0", dict(noise="fixed", fusion=1.0)))
    plan.append(Job("fusion", "per-frame noise + fusion 1.0", dict(noise="per-frame", fusion=1.0)))
    for weight in (0.0, 0.2, 0.4, 0.6, 0.8):
        plan.append(Job("flow_blend", f"everything on, flow_blend {weight}", {**full, "flow_blend": weight}))
    # what the presets ship (fixed noise, colour match, no cross-frame attention) at each weight
    for weight in (0.2, 0.4, 0.6, 0.8):
        plan.append(Job("flow_blend", f"fixed noise + colour match, flow_blend {weight}",
                        dict(noise="fixed", color_match=True, flow_blend=weight)))  # fmt: skip
    for weight in (0.0, 0.2, 0.4):
        plan.append(Job("blend", f"everything on, blend {weight}", {**full, "blend": weight}))
    for name, change in (
        ("fixed noise instead of warped", {"noise": "fixed"}),
        ("no flow-blend", {"flow_blend": 0.0}),
        ("no colour match", {"color_match": False}),
        ("no cross-frame attn", {"cross_frame_attn": False}),
        ("no latent fusion", {"fusion": 0.0}),
    ):
        plan.append(Job("ablation", f"everything on, {name}", {**full, **change}))
    for name, settings in (
        ("fixed noise + colour match", dict(noise="fixed", color_match=True)),
        ("fixed noise + cross-frame attn", dict(noise="fixed", cross_frame_attn=True)),
        ("warped noise + colour match", dict(noise="warped", color_match=True)),
        ("warped noise + cross-frame attn", dict(noise="warped", cross_frame_attn=True)),
        ("warped noise + flow-blend", dict(noise="warped", flow_blend=FLOW_BLEND)),
    ):
        plan.append(Job("single", name, settings))
    return plan


@dataclass
class Run:
    clip: str
    group: str
    mode: str
    settings: dict
    warp_error: float | None
    warp_mse: float | None
    flicker: float | None
    change_from_source: float
    detail: float
    source_detail: float
    source_warp_error: float | None
    trusted_fraction: float | None
    pairs: int
    cuts: list[int]
    stylise_s: float
    score_s: float
    series: dict | None = None  # per frame: warp_error and detail (kept for the long clips)

    def json(self) -> str:
        shown = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items() if k != "series"}
        return json.dumps(shown)


def parse_size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: give WIDTHxHEIGHT, e.g. 256x192")
    width, height = int(match[1]), int(match[2])
    if width % 8 or height % 8 or min(width, height) < 64:
        raise argparse.ArgumentTypeError(f"size {text}: both sides must be multiples of 8 and at least 64")
    return width, height


def make_config(settings: dict, size: tuple[int, int], model: str) -> vidiff.Config:
    # max_side = the longer side: the frames reach the model at the size they were drawn
    return vidiff.Config(**BASE).replace(**OFF, model=model, max_side=max(size)).replace(**settings)


class Bench:
    """Stylises and scores; identical (clip, settings) pairs are run once (the runs are deterministic)."""

    def __init__(self, parts, size: tuple[int, int], scratch: Path, keep: bool, motion_parts=None):
        self.parts, self.size, self.scratch, self.keep = parts, size, scratch, keep
        self.motion_parts = motion_parts  # the same model with a motion adapter, for the motion modes
        self.model = parts.name
        self.cache: dict[tuple[str, str], Run] = {}

    def run(self, source: Path, clip: str, job: Job) -> Run:
        config = make_config(job.settings, self.size, self.model)
        key = (clip, json.dumps(asdict(config), sort_keys=True))
        if key in self.cache:
            done = self.cache[key]
            return Run(**{**asdict(done), "group": job.group, "mode": job.label, "settings": job.settings})
        slug = re.sub(r"[^a-z0-9.]+", "-", f"{clip} {job.group} {job.label}".lower()).strip("-")
        output = self.scratch / f"{slug}.mp4"
        began = time.perf_counter()
        parts = self.parts
        if config.motion_adapter:  # as the tables name it ('tiny'), loaded from where load_motion put it
            parts = self.motion_parts
            config = config.replace(motion_adapter=parts.motion_adapter)
        vidiff.stylize_video(source, output, config, parts=parts)
        stylised = time.perf_counter() - began
        report = score_video(source, output, cut_threshold=config.cut_threshold if config.cuts else None)
        if not self.keep:
            output.unlink()
        run = Run(
            clip=clip, group=job.group, mode=job.label, settings=job.settings,
            warp_error=report.warp_error, warp_mse=report.warp_mse, flicker=report.flicker,
            change_from_source=report.change_from_source, detail=report.detail, source_detail=report.source_detail,
            source_warp_error=report.source_warp_error,
            trusted_fraction=report.trusted_fraction, pairs=report.pairs, cuts=report.cuts,
            stylise_s=stylised, score_s=time.perf_counter() - began - stylised,
            series={name: report.per_frame[name] for name in ("warp_error", "detail")},
        )  # fmt: skip
        self.cache[key] = run
        return run


def load_model(model: str | None, device: str):
    """The model parts; None is vidiff/models/tiny_trained, trained here first if it is missing."""
    if model is not None:
        return vidiff.load_parts(model, device)
    if not (TRAINED / "model_index.json").is_file():
        import train_tiny

        print(f"{TRAINED} is missing: training it (benchmarks/train_tiny.py, about 10 minutes on one CPU thread)",
              file=sys.stderr, flush=True)  # fmt: skip
        train_tiny.train(TRAINED, log=lambda text: print(text, file=sys.stderr, flush=True))
    parts = vidiff.load_parts(str(TRAINED), device)
    parts.name = os.path.relpath(TRAINED, ROOT)  # as the tables name it, wherever the script is run from
    return parts


def load_motion(model: str | None, device: str, adapter: str, scratch: Path):
    """The model parts with a motion adapter; 'tiny' is a random tiny MotionAdapter for the tiny
    architecture, saved into `scratch`."""
    if adapter == TINY:
        from vidiff.models.tiny import tiny_motion_adapter

        tiny_motion_adapter().save_pretrained(scratch / "tiny-motion-adapter")
        adapter = str(scratch / "tiny-motion-adapter")
    parts = vidiff.load_parts(model or str(TRAINED), device, motion_adapter=adapter)
    if model is None:
        parts.name = os.path.relpath(TRAINED, ROOT)
    return parts


def describe(name: str) -> str:
    """What the tables say about the model."""
    if name == TINY:
        return " (random weights, so no real style: its output is its noise)"
    if Path(ROOT / name).resolve() == TRAINED.resolve():
        return " (the tiny architecture trained offline on synthetic pictures by benchmarks/train_tiny.py; see the README)"
    return ""


def model_check(parts, size: tuple[int, int]) -> dict:
    """How much of the model's output comes from the source, and how much from the noise (fixed noise, BASE).

    Two unrelated pictures A and B stylised with the same seed, and A with another seed: a model that
    keeps its source makes out(A) and out(B) differ about as much as A and B do.
    """
    first = pan_frames(size, 1)[0]
    other = clip_frames("cut", size, 2)[1]  # the cut clip's second shot: another picture, other colours
    config = make_config({}, size, parts.name)

    def stylise(frame: np.ndarray, seed: int) -> np.ndarray:
        with Img2ImgProcessor(parts, config.replace(seed=seed)) as stylizer:
            return stylizer(frame, 0).image.astype(np.float32)

    out_a, out_b, out_a_reseeded = stylise(first, BASE["seed"]), stylise(other, BASE["seed"]), stylise(first, BASE["seed"] + 1)
    return {
        "sources_differ_by": float(np.abs(first.astype(np.float32) - other).mean()),
        "outputs_same_seed_differ_by": float(np.abs(out_a - out_b).mean()),
        "outputs_same_source_other_seed_differ_by": float(np.abs(out_a - out_a_reseeded).mean()),
    }


@torch.no_grad()
def vae_floor(parts, frames: list[np.ndarray]) -> dict:
    """Each frame through the VAE and back alone (latent mean; no noise, no UNet), in memory: the
    warp error of that round trip is a floor no noise mode can go below, and its change from the
    source is how much of every mode's change is the VAE's."""
    vae, trips = parts.vae, []
    for frame in frames:
        x = torch.from_numpy(frame).to(torch.float32).div(127.5).sub(1).permute(2, 0, 1)[None]
        x = x.to(parts.device, vae.dtype)
        decoded = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        trips.append(((decoded[0].permute(1, 2, 0).float().cpu() + 1) * 127.5).round().byte().numpy())
    errors = []
    for prev, cur, prev_trip, cur_trip in zip(frames, frames[1:], trips, trips[1:]):
        if is_cut(prev, cur, vidiff.Config.cut_threshold):
            continue
        flow, trusted = backward_flow(prev, cur)
        errors.append(pair_errors(prev_trip, cur_trip, flow, trusted).warp_error)
    change = float(np.mean([np.abs(t.astype(np.float32) - f).mean() for t, f in zip(trips, frames)]))
    return {"warp_error": float(np.mean(errors)), "change_from_source": change,
            "detail": float(np.mean([detail(t) for t in trips]))}  # fmt: skip


# --- the report ---


def number(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


METRICS = ("warp_error", "warp_mse", "flicker", "change_from_source", "detail")


def means(runs: list[Run], clips: list[str], label: str) -> dict[str, float | None]:
    chosen = [r for r in runs if r.mode == label and r.clip in clips]
    return {name: mean([getattr(r, name) for r in chosen]) for name in METRICS}


def metric_cells(m: dict) -> str:
    return (
        f"{number(m['warp_error'], 3)} | {number(m['warp_mse'], 5)} | {number(m['flicker'], 3)} | "
        f"{number(m['change_from_source'], 2)} | {number(m['detail'], 2)}"
    )


def share(value: float | None, base: float | None) -> str:
    part = ratio(value, base)
    return "n/a" if part is None else f"{part:.0%}"


def times(base: float | None, value: float | None) -> str:
    cut = ratio(base, value)
    return "n/a" if cut is None else f"{cut:.2f}×"


METRIC_HEADER = "warp error ↓ | warp MSE ↓ | flicker ↓ | change from source | detail"


def per_clip_table(runs: list[Run], clips: list[str], modes: list[str], floors: dict) -> list[str]:
    by_key = {(r.clip, r.mode): r for r in runs}
    lines = [f"| clip | mode | {METRIC_HEADER} | stylise s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for clip in clips:
        first = next((by_key[(clip, m)] for m in modes if (clip, m) in by_key), None)
        if first is None:
            continue
        cuts = f", cut at frame {', '.join(map(str, first.cuts))}" if first.cuts else ""
        lines.append(
            f"| **{clip}** | *the source itself: the floor* ({first.pairs} pairs, flow trusted on "
            f"{number(first.trusted_fraction and 100 * first.trusted_fraction, 0)}%{cuts}) | "
            f"{number(first.source_warp_error, 3)} | | | | {first.source_detail:.2f} | |"
        )
        if clip in floors:
            lines.append(
                f"| {clip} | *the VAE round trip alone, no noise: the model's floor* (in memory) | "
                f"{floors[clip]['warp_error']:.3f} | | | {floors[clip]['change_from_source']:.2f} | {floors[clip]['detail']:.2f} | |"
            )
        for mode in modes:
            run = by_key.get((clip, mode))
            if run is not None:
                lines.append(f"| {clip} | {mode} | {metric_cells(asdict(run))} | {run.stylise_s:.1f} |")
    return lines


def mean_table(runs: list[Run], clips: list[str], modes: list[str]) -> list[str]:
    lines = [
        f"| mode | {METRIC_HEADER} | warp error cut vs per-frame | detail vs per-frame |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = means(runs, clips, PER_FRAME)
    for mode in modes:
        m = means(runs, clips, mode)
        lines.append(
            f"| {mode} | {metric_cells(m)} | {times(base['warp_error'], m['warp_error'])} | {share(m['detail'], base['detail'])} |"
        )
    return lines


def targets(runs: list[Run], clips: list[str]) -> tuple[list[str], dict]:
    lines = [
        f"| clip | per-frame ÷ everything-on warp error (target ≥ {TARGET_VS_PER_FRAME:g}×) "
        f"| fixed ÷ everything-on warp error (target ≥ {TARGET_VS_FIXED:g}×) "
        f"| everything-on ÷ per-frame change from source (target ≥ {TARGET_CHANGE:.0%}) "
        "| everything-on ÷ per-frame detail (no target) |",
        "|---|---:|---:|---:|---:|",
    ]
    verdicts = {}

    def cell(value: float | None, target: float, percent: bool = False) -> str:
        if value is None:
            return "n/a"
        shown = f"{value:.0%}" if percent else f"{value:.2f}×"
        return f"{shown} {'met' if value >= target else '**missed**'}"

    for label, chosen in [*((clip, [clip]) for clip in clips), ("mean of the clips", clips)]:
        full, per_frame, fixed = (means(runs, chosen, m) for m in (FULL, PER_FRAME, FIXED))
        found = (
            ratio(per_frame["warp_error"], full["warp_error"]),
            ratio(fixed["warp_error"], full["warp_error"]),
            ratio(full["change_from_source"], per_frame["change_from_source"]),
        )
        verdicts[label] = found
        shown = f"**{label}**" if label == "mean of the clips" else label
        lines.append(
            f"| {shown} | {cell(found[0], TARGET_VS_PER_FRAME)} | {cell(found[1], TARGET_VS_FIXED)} "
            f"| {cell(found[2], TARGET_CHANGE, percent=True)} | {share(full['detail'], per_frame['detail'])} |"
        )
    return lines, verdicts


EXTRA_TITLES = {
    "strength": (
        f"Strength: the main modes at 0.3, 0.4 and 0.7 (the tables above are at {BASE['strength']}; with "
        f"{BASE['steps']} steps that is int(steps × strength) = 3, 4, 7 and {int(BASE['steps'] * BASE['strength'])} denoising steps)"
    ),
    "flow_blend": f"flow_blend weight, with everything else on or on fixed noise with colour match (the tables above use {FLOW_BLEND})",
    "blend": "Latent blend on top of everything on",
    "fusion": "Latent fusion: weight and fusion_end (the share of each frame's steps it acts on) with everything else on, and on plain noise",
    "ablation": "Everything on, less one technique",
    "single": "Techniques alone and in pairs, on fixed or warped noise",
}


def long_table(longs: list[Run]) -> list[str]:
    third = LONG_FRAMES // 3
    lines = [
        "",
        f"#### Longer clips: {LONG_FRAMES} frames; does anything build up over a shot?",
        "",
        f"The pan and the zoom at {LONG_FRAMES} frames (the zoom still ends at ×{ZOOM_END}, so it moves more slowly), "
        f"each mode once; warp error and detail over the first and the last {third} frames.",
        "",
        f"| clip | mode | warp error, frames 1-{third} | warp error, frames {LONG_FRAMES - third}-{LONG_FRAMES - 1} "
        f"| detail, frames 0-{third - 1} | detail, frames {LONG_FRAMES - third}-{LONG_FRAMES - 1} | change from source |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in longs:
        errors, details = run.series["warp_error"], run.series["detail"]
        lines.append(
            f"| {run.clip} | {run.mode} | {number(mean(errors[1 : third + 1]), 2)} | {number(mean(errors[-third:]), 2)} "
            f"| {number(mean(details[:third]), 2)} | {number(mean(details[-third:]), 2)} | {run.change_from_source:.2f} |"
        )
    return lines


def extras_tables(runs: list[Run], clips: list[str], speeds: list[Run], longs: list[Run]) -> list[str]:
    lines = []
    base = means(runs, clips, PER_FRAME)["warp_error"]
    for group, title in EXTRA_TITLES.items():
        chosen = [r for r in runs if r.group == group]
        if not chosen:
            continue
        lines += ["", f"#### {title}", ""]
        lines += [f"| settings | {METRIC_HEADER} | warp error cut vs per-frame |", "|---|---:|---:|---:|---:|---:|---:|"]
        for label in dict.fromkeys(r.mode for r in chosen):
            m = means(chosen, clips, label)
            reference = base
            match = re.search(r"@ strength ([0-9.]+)", label)
            if match:  # compare with per-frame noise at the same strength
                reference = means(chosen, clips, f"{PER_FRAME} @ strength {match[1]}")["warp_error"]
            lines.append(f"| {label} | {metric_cells(m)} | {times(reference, m['warp_error'])} |")
    if speeds:
        lines += [
            "",
            "#### Pan speed: per-frame, fixed and warped noise on horizontal pans (8 px = one latent pixel)",
            "",
            "Extra clips: the pan's picture sliding horizontally at each speed; one run per cell. "
            "Cells: warp error (change from source).",
            "",
            "| pan speed, px/frame | source floor | per-frame noise | fixed noise | warped noise | "
            "warped ÷ fixed warp error |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        by_key = {(r.clip, r.mode): r for r in speeds}
        for clip in dict.fromkeys(r.clip for r in speeds):
            cells = [by_key.get((clip, m)) for m in (PER_FRAME, FIXED, WARPED)]
            shown = [f"{number(c.warp_error, 2)} ({number(c.change_from_source, 1)})" if c else "n/a" for c in cells]
            floor = next((c.source_warp_error for c in cells if c), None)
            rel = ratio(cells[2] and cells[2].warp_error, cells[1] and cells[1].warp_error)
            lines.append(
                f"| {clip.split()[1].removesuffix('px')} | {number(floor, 3)} | {' | '.join(shown)} | {number(rel, 2)} |"
            )
    if longs:
        lines += long_table(longs)
    return lines


def floor_line(floors: dict, clips: list[str]) -> list[str]:
    chosen = [floors[clip] for clip in clips if clip in floors]
    if not chosen:
        return []
    return [
        f"The VAE round trip alone (each frame encoded and decoded, no noise and no UNet; in memory), mean of "
        f"the clips: warp error {mean([f['warp_error'] for f in chosen]):.3f}, change from source "
        f"{mean([f['change_from_source'] for f in chosen]):.2f}, detail {mean([f['detail'] for f in chosen]):.2f}. "
        "No mode can go much below that warp error.",
        "",
    ]


def section(runs, speeds, longs, args, clips, modes, command, seconds, check, floors, parts) -> str:
    main = [r for r in runs if r.group == "modes"]
    width, height = args.size
    target_lines, _ = targets(main, clips)
    shared = ", ".join(f"{k} {BASE[k]}" for k in ("strength", "steps", "guidance", "scheduler", "seed"))
    lines = [
        BEGIN,
        f"## Temporal consistency: the anti-flicker modes on synthetic clips (model `{parts.name}`)",
        "",
        "Written by `benchmarks/temporal.py`; everything between the markers is replaced on each run.",
        "",
        f"- **Command:** `{command}`",
        f"- **Date:** {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- **Machine:** {machine(parts.device)}; Python {platform.python_version()}, vidiff {vidiff.__version__} at {revision()}",
        f"- **Runtime:** {seconds:.0f} s in all: {len(runs) + len(speeds) + len(longs)} (clip, settings) results, "
        "each stylised then scored (identical settings are run once).",
        f"- **Clips** (benchmarks/clips.py): {args.frames} frames each at {width}x{height}, 24 fps, H.264 crf "
        f"{args.clip_crf}. pan: ({PAN_STEP[0]}, {PAN_STEP[1]}) px/frame; zoom: centred, ×1 → ×{ZOOM_END}; "
        f"object: a textured disc crossing a still textured background at {OBJECT_STEP} px/frame; "
        f"cut: a pan, then a hard cut at frame {args.frames // 2} to another picture.",
        f"- **Settings:** model `{parts.name}`"
        + describe(parts.name)
        + f", {str(parts.dtype).removeprefix('torch.')}, {shared}, so "
        f"{int(BASE['steps'] * BASE['strength'])} denoising steps per frame; prompt {BASE['prompt']!r}, "
        f"negative {BASE['negative_prompt']!r}; output crf {BASE['crf']}; blend {BLEND}, flow_blend "
        f"{FLOW_BLEND} and fusion {FUSION} (fusion_end {vidiff.Config().fusion_end}) where a mode turns them on; "
        "cut detection on in the stylizer and the scorer "
        f"(threshold {vidiff.Config().cut_threshold}).",
        "- **Metrics** (`vidiff.score.score_video`): warp error = mean |stylised t+1 − stylised t warped "
        "along the source's flow| over the pixels the flow is trusted on, 0-255; warp MSE, the same squared, "
        "0-1; flicker = |change of mean luma| after warping, 0-255; change from source = mean |stylised − "
        "source|, 0-255; detail = mean |luma − luma blurred (σ = the longer side ÷ 64)|, 0-255: fine texture, which "
        "blur lowers, so that a mode can't look steady by blurring unnoticed. Pairs across a cut are left out. "
        "Means over clips weigh each clip equally.",
        "- **Modes:** " + "; ".join(f"{m}: `{fmt(MODES[m])}`" for m in modes) + " (everything else off).",
        *(["- **Motion windows** on a random tiny motion adapter (`motion_adapter=tiny`) say only that the windows "
           "run: a random motion module knows no motion, so these numbers say nothing about a trained adapter's."]
          if any(MODES[m].get("motion_adapter") == TINY for m in modes) else []),
        "",
        "### Targets: everything on against per-frame and fixed noise",
        "",
        *target_lines,
        "",
        "### Means over the clips",
        "",
        *mean_table(main, clips, modes),
        "",
        *floor_line(floors, clips),
        "### Per clip",
        "",
        *per_clip_table(main, clips, modes, floors),
        "",
        "### How much of the model's output comes from its source",
        "",
        "Two unrelated pictures A and B (the pan's and the cut's second shot's first frames) stylised with the "
        "same seed, and A with another seed (fixed noise, the settings above); mean absolute differences, 0-255:",
        "",
        f"- |A − B|, the sources: {check['sources_differ_by']:.2f}",
        f"- |out(A) − out(B)|, same seed: {check['outputs_same_seed_differ_by']:.2f}",
        f"- |out(A) − out(A')|, same source, seed + 1: {check['outputs_same_source_other_seed_differ_by']:.2f}",
    ]
    extra = extras_tables(runs, clips, speeds, longs)
    if extra:
        lines += ["", "### Extras: settings variations (not the issue's table)", "", "Means over the clips "
                  + ", ".join(clips) + " unless a table says otherwise.", *extra]  # fmt: skip
    lines.append(END)
    return "\n".join(lines) + "\n"


def fmt(settings: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


# --- the command ---


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10, help="frames per clip (default 10)")
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="WIDTHxHEIGHT (default 256x192)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update (default benchmarks/RESULTS.md)")
    parser.add_argument("--model", default=None,
                        help="the model, as vidiff's --model takes it (default vidiff/models/tiny_trained, trained first "
                        "by benchmarks/train_tiny.py if it is missing; 'tiny' is the random tiny model)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="default auto")
    parser.add_argument("--clips", nargs="+", choices=CLIPS, default=list(CLIPS), help="which clips (default all)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES), metavar="MODE",
                        help="which modes (default all): " + "; ".join(MODES))  # fmt: skip
    parser.add_argument("--extras", action="store_true", help="also run the settings variations (about 5× longer)")
    parser.add_argument("--clip-crf", type=int, default=4, help="crf of the synthetic source clips (default 4)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: see THREADS_NOTE in the source; 0 is torch's choice)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the clips and stylised videos in this folder")
    parser.add_argument("--motion-adapter", default=None, metavar="ID|PATH|tiny",
                        help="also run AnimateDiff motion windows with this motion adapter ('tiny': a random tiny one, "
                        "whose numbers say nothing about a trained adapter)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.frames < 4:
        parser.error("--frames: at least 4 (the cut clip needs two shots of two frames)")
    given = sys.argv[1:] if argv is None else argv
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *given])

    logging.getLogger("vidiff").setLevel(logging.ERROR)  # the tiny model's "no real style" note, every run
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    parts = load_model(args.model, args.device)

    check = model_check(parts, args.size)
    print(json.dumps({"model_check": check}), flush=True)
    runs: list[Run] = []
    speeds: list[Run] = []
    longs: list[Run] = []
    floors: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vidiff-temporal-") as temporary:
        scratch = args.keep or Path(temporary)
        scratch.mkdir(parents=True, exist_ok=True)
        motion_parts = None
        if args.motion_adapter:
            motion_parts = load_motion(args.model, args.device, args.motion_adapter, scratch)
            for mode, settings in MOTION_MODES.items():
                MODES[mode] = {**settings, "motion_adapter": args.motion_adapter}
                args.modes.append(mode)
        bench = Bench(parts, args.size, scratch, keep=args.keep is not None, motion_parts=motion_parts)
        plan = jobs(args.extras, args.modes)
        for clip in args.clips:
            frames = clip_frames(clip, args.size, args.frames)
            floors[clip] = vae_floor(parts, frames)
            print(json.dumps({"clip": clip, "vae_round_trip": floors[clip]}), flush=True)
            source = write_frames(scratch / f"{clip}.mp4", frames, args.clip_crf)
            for job in plan:
                runs.append(bench.run(source, clip, job))
                print(runs[-1].json(), flush=True)
        if args.extras:
            for speed in PAN_SPEEDS:
                clip = f"pan {speed}px"
                frames = pan_frames(args.size, args.frames, step=(speed, 0))
                source = write_frames(scratch / f"pan-{speed}px.mp4", frames, args.clip_crf)
                for mode in (PER_FRAME, FIXED, WARPED):
                    speeds.append(bench.run(source, clip, Job("pan speed", mode, MODES[mode])))
                    print(speeds[-1].json(), flush=True)
            for clip in LONG_CLIPS:
                frames = clip_frames(clip, args.size, LONG_FRAMES)
                source = write_frames(scratch / f"{clip}-{LONG_FRAMES}.mp4", frames, args.clip_crf)
                for mode in LONG_MODES:
                    longs.append(bench.run(source, f"{clip}, {LONG_FRAMES} frames", Job("long", mode, MODES[mode])))
                    print(longs[-1].json(), flush=True)
    seconds = time.perf_counter() - began
    write_section(args.out, section(runs, speeds, longs, args, args.clips, args.modes, command, seconds, check, floors, parts),
                  "temporal")  # fmt: skip

    if all(m in args.modes for m in (FULL, PER_FRAME, FIXED)):
        _, verdicts = targets([r for r in runs if r.group == "modes"], args.clips)
        vs_per_frame, vs_fixed, change = verdicts["mean of the clips"]
        print(
            f"mean of the clips: per-frame ÷ everything-on warp error {vs_per_frame:.2f}× (target ≥ "
            f"{TARGET_VS_PER_FRAME:g}×), fixed ÷ everything-on {vs_fixed:.2f}× (≥ {TARGET_VS_FIXED:g}×), "
            f"change from source {change:.0%} of per-frame's (≥ {TARGET_CHANGE:.0%})",
            file=sys.stderr,
        )
    print(f"{len(runs) + len(speeds) + len(longs)} results in {seconds:.0f} s; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
