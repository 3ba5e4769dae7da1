"""Cadence benchmark: --cadence 1, 2, 4, 8 and auto on temporal.py's synthetic clips, scored as temporal.py scores.

    python benchmarks/cadence.py [--frames N] [--size WxH] [--cadences 1 2 4 8 auto] [--out benchmarks/RESULTS.md]

For each clip and cadence: the whole stylize_video time (reading, the model, the flow of the frames
between, encoding), the warp error, the change from the source and the detail (vidiff.score), with
the settings temporal.py's "flow-blend + colour" mode uses (what the presets ship, with cadence on
top). Prints one JSON line per run and a table; with --out, writes the table into that markdown
file's cadence section. The model is vidiff/models/tiny_trained unless --model names another.

A benchmark, not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # temporal.py, clips.py, beside this file

import torch  # noqa: E402

from clips import CLIPS, clip_frames, write_frames  # noqa: E402
from report import write_section  # noqa: E402
from temporal import MODES, Bench, Job, load_model, number, parse_size  # noqa: E402

MODE = "flow-blend + colour"


def _cadence(text: str) -> int | str:
    return text if text == "auto" else int(text)


def table(runs: list, cadences: list, clips: list[str]) -> list[str]:
    """Per clip and cadence: seconds, the speed-up against cadence 1, warp error, change, detail."""
    lines = ["| clip | cadence | seconds | speed-up | warp error | change from source | detail |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for clip in clips:
        base = next((r for r in runs if r.clip == clip and r.settings["cadence"] == 1), None)
        for cadence in cadences:
            run = next(r for r in runs if r.clip == clip and r.settings["cadence"] == cadence)
            speed = f"{base.stylise_s / run.stylise_s:.2f}×" if base is not None else "–"
            lines.append(f"| {clip} | {cadence} | {run.stylise_s:.1f} | {speed} | {number(run.warp_error, 2)} | "
                         f"{number(run.change_from_source, 2)} | {number(run.detail, 2)} |")  # fmt: skip
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per clip (default 24)")
    parser.add_argument("--size", type=parse_size, default=(256, 192), help="WIDTHxHEIGHT (default 256x192)")
    parser.add_argument("--cadences", type=_cadence, nargs="+", default=[1, 2, 4, 8, "auto"],
                        help="default 1 2 4 8 auto")
    parser.add_argument("--clips", nargs="+", choices=CLIPS, default=list(CLIPS), help="which clips (default all)")
    parser.add_argument("--model", default=None, help="default vidiff/models/tiny_trained")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"), help="default auto")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as temporal.py)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file whose cadence section to write")
    args = parser.parse_args(argv)
    if args.frames < 4:
        parser.error("--frames: at least 4 (the cut clip needs two shots of two frames)")

    logging.getLogger("vidiff").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    began = time.perf_counter()
    parts = load_model(args.model, args.device)
    runs = []
    with tempfile.TemporaryDirectory(prefix="vidiff-cadence-") as temporary:
        bench = Bench(parts, args.size, Path(temporary), keep=False)
        for clip in args.clips:
            source = write_frames(Path(temporary) / f"{clip}.mp4", clip_frames(clip, args.size, args.frames))
            for cadence in args.cadences:
                runs.append(bench.run(source, clip, Job("cadence", f"cadence {cadence}",
                                                        {**MODES[MODE], "cadence": cadence})))  # fmt: skip
                print(runs[-1].json(), flush=True)
    lines = table(runs, args.cadences, args.clips)
    print("\n".join(lines))
    if args.out is not None:
        width, height = args.size
        text = "\n".join([
            "<!-- cadence:begin -->", "## Cadence", "",
            f"{parts.name}, {args.frames} frames at {width}x{height}, mode \"{MODE}\"; seconds are the whole "
            f"stylize_video call ({time.perf_counter() - began:.0f} s in all).", "", *lines, "<!-- cadence:end -->", "",
        ])  # fmt: skip
        write_section(args.out, text, "cadence")
    return 0


if __name__ == "__main__":
    sys.exit(main())
