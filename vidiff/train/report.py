"""What a training run shows besides its progress bar: the loss chart and the sample pictures."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import VidiffError
from ..io.atomic import write_atomic
from ..score import _frame_ticks, _polyline, _value_axis

PLOT_SIZE = (800, 360)
_INK, _GRID, _RAW, _SMOOTH = (40, 40, 40), (225, 225, 225), (200, 200, 200), (180, 90, 20)  # BGR


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
    """The loss per step (grey) and its moving average (blue), as a BGR image."""
    width, height = PLOT_SIZE
    left, right, top, bottom = 64, 20, 34, 44
    image = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    y_max, divisions = _value_axis(max(losses, default=0.0))
    x_max = max(len(losses), 2)

    def at(step: float, value: float) -> tuple[int, int]:
        x = left + step / x_max * (width - left - right)
        y = height - bottom - min(value, y_max) / y_max * (height - top - bottom)
        return int(round(x)), int(round(y))

    for value in np.linspace(0, y_max, divisions + 1):
        cv2.line(image, at(0, value), at(x_max, value), _GRID, 1)
        label = f"{value:.3g}"
        (text_w, text_h), _ = cv2.getTextSize(label, font, 0.4, 1)
        x, y = at(0, value)
        cv2.putText(image, label, (x - text_w - 6, y + text_h // 2), font, 0.4, _INK, 1, cv2.LINE_AA)
    for step in _frame_ticks(x_max):
        x, y = at(step, 0)
        cv2.line(image, (x, y), (x, y + 4), _INK, 1)
        (text_w, text_h), _ = cv2.getTextSize(str(step), font, 0.4, 1)
        cv2.putText(image, str(step), (x - text_w // 2, y + 8 + text_h), font, 0.4, _INK, 1, cv2.LINE_AA)
    cv2.line(image, at(0, 0), at(x_max, 0), _INK, 1)
    cv2.line(image, at(0, 0), at(0, y_max), _INK, 1)
    cv2.putText(image, "step", (width - right - 32, height - 6), font, 0.4, _INK, 1, cv2.LINE_AA)
    _polyline(image, [at(i + 1, v) for i, v in enumerate(losses)], _RAW)
    _polyline(image, [at(i + 1, v) for i, v in enumerate(smoothed(losses))], _SMOOTH)
    title = "training loss per step (grey) and its moving average (blue)"
    cv2.putText(image, title, (left, 20), font, 0.45, _INK, 1, cv2.LINE_AA)
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
