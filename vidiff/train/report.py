"""What a training run shows besides its progress bar: the loss chart and the sample pictures."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import VidiffError
from ..io.atomic import write_atomic
from ..score import CHART_MARGINS, _polyline, _value_axis, chart_axes

PLOT_SIZE = (800, 360)
_INK, _RAW, _SMOOTH = (40, 40, 40), (200, 200, 200), (180, 90, 20)  # BGR


def loss_plot_path(out: Path) -> Path:
    return out.with_name(out.stem + ".loss.png")


def samples_folder(out: Path) -> Path:
    return out.with_name(out.stem + ".samples")


def smoothed(losses: list[float], weight: float = 0.9) -> list[float]:
    """An exponential moving average, debiased as Adam's moments are, so that the first steps aren't pulled to 0."""
    out, average = [], 0.0
    for step, loss in enumerate(losses, 1):
        average = weight * average + (1 - weight) * loss
        out.append(average / (1 - weight**step))
    return out


def draw_loss_plot(losses: list[float]) -> np.ndarray:
    """The loss per step (grey) and its moving average (blue), as a BGR image, drawn as `vidiff score` draws its chart."""
    width, height = PLOT_SIZE
    image = np.full((height, width, 3), 255, np.uint8)
    y_max, divisions = _value_axis(max(losses, default=0.0))
    at = chart_axes(image, max(len(losses), 2), y_max, divisions, "step")
    _polyline(image, [at(i + 1, v) for i, v in enumerate(losses)], _RAW)
    _polyline(image, [at(i + 1, v) for i, v in enumerate(smoothed(losses))], _SMOOTH)
    title = "training loss per step (grey) and its moving average (blue)"
    cv2.putText(image, title, (CHART_MARGINS[0], 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, _INK, 1, cv2.LINE_AA)
    return image


def write_png(image_bgr: np.ndarray, path: Path) -> None:
    ok, png = cv2.imencode(".png", image_bgr)
    if not ok:
        raise VidiffError(f"{path}: OpenCV could not encode the picture as PNG")
    write_atomic(path, lambda file: file.write(png.tobytes()))


def write_loss_plot(losses: list[float], path: Path) -> None:
    write_png(draw_loss_plot(losses), path)


@torch.no_grad()
def draw_sample(parts, prompt: str, size: tuple[int, int], steps: int, seed: int) -> np.ndarray:
    """A text-to-image picture (RGB uint8) from the model with the LoRA as trained so far, as diffusers draws it."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    common = dict(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
                  scheduler=DDIMScheduler.from_config(parts.scheduler_config))  # fmt: skip
    if parts.kind == "sdxl":
        pipe = StableDiffusionXLPipeline(text_encoder_2=parts.text_encoder_2, tokenizer_2=parts.tokenizer_2, **common)
    else:
        pipe = StableDiffusionPipeline(safety_checker=None, feature_extractor=None, requires_safety_checker=False, **common)
    pipe.set_progress_bar_config(disable=True)
    width, height = size
    image = pipe(prompt, width=width, height=height, num_inference_steps=steps, output_type="np",
                 generator=torch.Generator("cpu").manual_seed(seed)).images[0]  # fmt: skip
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_sample(image_rgb: np.ndarray, folder: Path, step: int) -> Path:
    os.makedirs(folder, exist_ok=True)
    path = folder / f"step-{step:06d}.png"
    write_png(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), path)
    return path
