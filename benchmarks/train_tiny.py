"""Train the tiny model offline on the CPU, so that the temporal benchmark has a model that behaves
like a real one: it reproduces its input, and restyles it with detail that depends on the noise.

    python benchmarks/train_tiny.py [--out vidiff/models/tiny_trained] [--vae-steps N] [--unet-steps N]
                                    [--shift-weight W]

The architecture is vidiff.models.tiny_parts()'s (an 8× VAE with 4 latent channels, a two-level
cross-attention UNet, a two-layer CLIP text encoder), initialised by it with seed 0. Trained on
synthetic pictures drawn here (octaves of smooth noise in random colours, textured shapes, gradients:
the kind of content the benchmark clips have, never the clips themselves):

1. the VAE as an autoencoder: L1 on the pixels, on their gradients and on their colour, a small KL
   term, and a shift-consistency term (each picture is also seen moved by 1-7 pixels, and the two
   reconstructions must agree), since a tiny VAE is far from exact and its errors would otherwise
   change as a picture slides across the 8-pixel latent grid. Then its scaling_factor is set to
   1 / std of the latents, as Stable Diffusion's was chosen, so that scaled latents have unit spread
   and img2img's noise level means what it means for SD;
2. the UNet and the text encoder together, the UNet as an epsilon-prediction denoiser of those
   scaled latents on SD 1.5's noise schedule (vidiff.models.SD15_SCHEDULER_CONFIG), half the
   timesteps drawn from the lower half, where img2img spends its steps. Half the pictures are shown
   as they are, captioned with plain prompts ("", "a photo", the benchmark's negative prompt...); the
   other half as "wooden carvings" (their light on a walnut palette with 30% of their colour kept,
   and wood grain of a random direction, spacing and phase), captioned with wood-carving prompts (the
   benchmark's among them). Since the grain is random, nothing in a picture says where its grain
   goes: the model learns to draw it from the noise, so img2img with a wood prompt restyles a picture
   with detail that depends on the seed, as a real model's texture does. The text encoder is trained
   too: with tiny_parts()'s random weights its embeddings told prompts apart by their length more
   than by their words.

Deterministic: the same seed and step counts give the same weights on the same machine (one torch
thread; the pictures come from seeded generators). About 10 minutes on one CPU thread. The weights
are saved as float16 safetensors (2.6 MB) in a diffusers folder that vidiff loads as a local model
(`--model vidiff/models/tiny_trained`; it ships with the package for the demo), with training.json saying how it was made.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from vidiff.models.tiny import SD15_SCHEDULER_CONFIG, TRAINED_TINY, tiny_parts  # noqa: E402

DEFAULT_OUT = TRAINED_TINY
SEED = 0
VAE_LR, UNET_LR = 2e-3, 1e-3
VAE_STEPS, UNET_STEPS = 800, 1200
SHIFT_WEIGHT = 0.3

# The captions: a wood prompt is one to three wood phrases, a plain prompt one to three plain ones
# (or none: ""), either now and then with a neutral one. Many of each, of many lengths, so that the
# prompts' words, not their lengths, tell the style apart; the benchmark's prompt and negative
# prompt are among them.
WOOD_PHRASES = (
    "a wooden carving", "hand-carved from walnut", "visible wood grain", "wood carving", "carved from oak",
    "walnut wood", "a wooden sculpture", "chiselled wood", "wood grain", "carved in wood",
)  # fmt: skip
PLAIN_PHRASES = (
    "a photo", "photo", "blurry", "low quality", "a picture", "an image", "colourful", "abstract texture",
    "natural colours", "a snapshot",
)  # fmt: skip
NEUTRAL_PHRASES = ("detailed", "high quality", "sharp focus")
BENCHMARK_PROMPT = "a wooden carving, hand-carved from walnut, visible wood grain"
BENCHMARK_NEGATIVE = "photo, blurry, low quality"
PROMPTS_PER_STYLE = 64


def captions(rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """The wood prompts and the plain prompts the UNet and the text encoder are trained on."""

    def phrases(pool: tuple[str, ...], low: int, high: int) -> list[str]:
        chosen = rng.choice(len(pool), size=int(rng.integers(low, high + 1)), replace=False)
        return [pool[i] for i in chosen]

    wood, plain = [BENCHMARK_PROMPT], [BENCHMARK_NEGATIVE, ""]
    while len(wood) < PROMPTS_PER_STYLE:
        words = phrases(WOOD_PHRASES, 1, 3) + (phrases(NEUTRAL_PHRASES, 1, 1) if rng.random() < 0.3 else [])
        wood.append(", ".join(words))
    while len(plain) < PROMPTS_PER_STYLE:
        words = phrases(PLAIN_PHRASES, 1, 3) + (phrases(NEUTRAL_PHRASES, 1, 1) if rng.random() < 0.3 else [])
        plain.append(", ".join(words))
    return wood, plain


# walnut, from the dark of deep cuts to the light of polished faces (RGB)
PALETTE = np.array([[38, 20, 10], [96, 56, 28], [158, 102, 56], [214, 168, 112]], np.float32)


# --- the pictures ---


def smooth_noise(rng: np.random.Generator, height: int, width: int, sigma: float) -> np.ndarray:
    octave = cv2.GaussianBlur(rng.normal(0, 1, (height, width)).astype(np.float32), (0, 0), sigma)
    return octave / max(float(octave.std()), 1e-6)


def texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Octaves of smooth noise, fine to broad, in colours around a random hue: RGB uint8."""
    light = np.zeros((height, width), np.float32)
    for sigma in (1.0, 2.5, 6.0, 16.0):
        light += rng.uniform(0.2, 1.2) * smooth_noise(rng, height, width, sigma * rng.uniform(0.7, 1.5))
    light /= max(float(light.std()), 1e-6)
    tint = smooth_noise(rng, height, width, rng.uniform(6, 20))
    hue = rng.uniform(0, 180)
    hsv = np.stack(
        [
            (hue + rng.uniform(5, 30) * tint) % 180,
            np.clip(rng.uniform(60, 230) + rng.uniform(10, 60) * tint, 0, 255),
            np.clip(rng.uniform(90, 170) + rng.uniform(20, 75) * light, 0, 255),
        ],
        axis=-1,
    ).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def picture(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured background with, often, a brightness gradient and a few textured shapes on it."""
    image = texture(rng, size, size).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * math.pi)
        ramp = (xx - 0.5) * math.cos(angle) + (yy - 0.5) * math.sin(angle)
        image = image * (1 + rng.uniform(0.3, 1.0) * ramp)[..., None]
    for _ in range(rng.integers(0, 4)):
        skin = texture(rng, size, size).astype(np.float32)
        cx, cy = rng.uniform(0, 1, 2)
        if rng.random() < 0.6:  # an ellipse
            rx, ry = rng.uniform(0.08, 0.35, 2)
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        else:  # a rectangle
            hx, hy = rng.uniform(0.08, 0.3, 2)
            inside = (np.abs(xx - cx) <= hx) & (np.abs(yy - cy) <= hy)
        mask = inside.astype(np.float32)
        if rng.random() < 0.5:  # a soft edge now and then
            mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 2.0))
        image = image * (1 - mask[..., None]) + skin * mask[..., None]
    return np.clip(image, 0, 255).astype(np.uint8)


def wooden(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The picture as a walnut carving: its light on a wood palette, with grain of a random direction,
    spacing and phase; 30% of its own colour stays, as on stained wood (so that any colour has a wooden
    version to learn from)."""
    height, width = image.shape[:2]
    rgb = image.astype(np.float32)
    luma = (rgb @ np.array([0.299, 0.587, 0.114], np.float32)) / 255
    luma = cv2.GaussianBlur(luma, (0, 0), 0.8)  # a carving loses the very finest detail
    tone = 0.5 + 1.15 * (luma - luma.mean())
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(18, 36)
    wobble = rng.uniform(1.5, 4.0) * smooth_noise(rng, height, width, rng.uniform(14, 28))
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period + wobble + rng.uniform(0, 2 * math.pi)
    grain = np.sin(phase)
    grain = np.sign(grain) * np.abs(grain) ** 0.6  # sharper rings than a plain sine
    tone = np.clip(tone + 0.22 * grain, 0, 1)
    scaled = tone * (len(PALETTE) - 1)
    low = np.clip(np.floor(scaled).astype(int), 0, len(PALETTE) - 2)
    frac = (scaled - low)[..., None]
    wood = PALETTE[low] * (1 - frac) + PALETTE[low + 1] * frac
    # the picture's own colour at the wood's brightness
    wood_luma = wood @ np.array([0.299, 0.587, 0.114], np.float32)
    own_luma = np.maximum(rgb @ np.array([0.299, 0.587, 0.114], np.float32), 8.0)
    stained = rgb * (wood_luma / own_luma)[..., None]
    return np.clip(0.7 * wood + 0.3 * stained, 0, 255).astype(np.uint8)


def to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """RGB uint8 pictures as a batch in [-1, 1], as vidiff's stylizer feeds the VAE."""
    batch = torch.from_numpy(np.stack(images)).float().div(127.5).sub(1.0)
    return batch.permute(0, 3, 1, 2).contiguous()


# --- training ---


def lr_at(step: int, steps: int, peak: float, warmup: int = 50) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(steps - warmup, 1)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def chroma(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's colour less its grey, averaged over 4×4 blocks: the colour, without the fine detail."""
    return F.avg_pool2d(x - x.mean(1, keepdim=True), 4)


def train_vae(vae, rng: np.random.Generator, steps: int, batch: int, crop: int, kl_weight: float,
              shift_weight: float, log) -> None:
    """L1 on the pixels, on their gradients (sharpness) and on their colour (which a tiny VAE is slow
    to learn from the pixels alone: at first it reconstructs grey), plus kl_weight × KL per element,
    plus shift_weight × a shift-consistency term: each picture is also seen moved by (dx, dy) pixels,
    1-7 (never a whole latent pixel), and the two reconstructions must agree where they overlap.

    SD's VAE reconstructs nearly exactly, so its round trip moves with its input; a tiny VAE's is far
    from exact, and without that term its errors change with where the picture sits on the 8-pixel
    latent grid, so its round trip alone flickers under motion (see the README)."""
    vae.train().requires_grad_(True)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)
    began = time.perf_counter()
    pairs = batch // 2
    for step in range(steps):
        # mostly plain pictures, some wooden ones: the VAE must reproduce both
        images = [picture(rng, crop + 8) for _ in range(pairs)]
        images = [wooden(im, rng) if rng.random() < 0.3 else im for im in images]
        big = to_tensor(images)
        dx, dy = (int(v) for v in rng.integers(1, 8, 2))
        x = torch.cat([big[..., :crop, :crop], big[..., dy : dy + crop, dx : dx + crop]])
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        (gy_x, gx_x), (gy_y, gx_y) = gradients(x), gradients(y)
        recon = (
            (y - x).abs().mean()
            + 0.25 * ((gy_y - gy_x).abs().mean() + (gx_y - gx_x).abs().mean())
            + 1.5 * (chroma(y) - chroma(x)).abs().mean()
        )
        # y[pairs + i] at (r, c) shows big at (r + dy, c + dx), which y[i] shows at (r + dy, c + dx)
        shift = (y[pairs:, :, : crop - dy, : crop - dx] - y[:pairs, :, dy:, dx:]).abs().mean()
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = recon + kl_weight * kl + shift_weight * shift
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, steps, VAE_LR)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps}: reconstruction {recon.item():.4f}, shift {shift.item():.4f}, "
                f"kl {kl.item():.3f}, {time.perf_counter() - began:.0f} s")  # fmt: skip
    vae.eval().requires_grad_(False)


@torch.no_grad()
def encode_dataset(vae, rng: np.random.Generator, count: int, size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each picture plain and wooden: the latent means and stds (unscaled), and which are wooden."""
    means, stds, style = [], [], []
    for start in range(0, count, 8):
        plain = [picture(rng, size) for _ in range(min(8, count - start))]
        for images, label in ((plain, 0), ([wooden(im, rng) for im in plain], 1)):
            dist = vae.encode(to_tensor(images)).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
            style += [label] * len(images)
    return torch.cat(means), torch.cat(stds), torch.tensor(style)


def token_ids(parts, prompts: list[str]) -> torch.Tensor:
    return parts.tokenizer(prompts, padding="max_length", max_length=parts.tokenizer.model_max_length,
                           truncation=True, return_tensors="pt").input_ids  # fmt: skip


def train_unet(parts, latents, stds, style, steps: int, batch: int, crop: int, log) -> dict:
    """Epsilon prediction on SD 1.5's schedule: x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, loss |ε̂ − ε|², each
    latent captioned by a random prompt of its style. The text encoder is trained along with the UNet:
    random, its embeddings tell prompts apart more by their length than by their words."""
    from diffusers import DDPMScheduler

    unet, text_encoder = parts.unet, parts.text_encoder
    scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    alphas = scheduler.alphas_cumprod.float()
    scale = parts.vae.config.scaling_factor
    wood, plain = captions(np.random.default_rng(SEED + 3))
    wood_ids, plain_ids = token_ids(parts, wood), token_ids(parts, plain)
    unet.train().requires_grad_(True)
    text_encoder.train().requires_grad_(True)
    optimiser = torch.optim.AdamW([*unet.parameters(), *text_encoder.parameters()], lr=UNET_LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(SEED + 2)
    count, size = latents.shape[0], latents.shape[-1]
    began = time.perf_counter()
    for step in range(steps):
        index = torch.randint(0, count, (batch,), generator=generator)
        top, left = torch.randint(0, size - crop + 1, (2,), generator=generator).tolist()
        window = (slice(None), slice(None), slice(top, top + crop), slice(left, left + crop))
        mean, std = latents[index][window], stds[index][window]
        x0 = (mean + std * torch.randn(mean.shape, generator=generator)) * scale
        noise = torch.randn(x0.shape, generator=generator)
        # half the timesteps anywhere, half in the lower half, where img2img at strength ≤ 0.7 spends
        # its steps (at 0.55 with 10 karras steps: t = 327, 146, 41, 7, 0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
        low = torch.randint(0, scheduler.config.num_train_timesteps // 2, (batch,), generator=generator)
        t = torch.where(torch.arange(batch) % 2 == 1, low, t)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        which = torch.randint(0, PROMPTS_PER_STYLE, (batch,), generator=generator)
        ids = torch.where(style[index].view(-1, 1).bool(), wood_ids[which], plain_ids[which])
        cond = text_encoder(ids)[0]
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, steps, UNET_LR)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*unet.parameters(), *text_encoder.parameters()], 1.0)
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps}: loss {loss.item():.4f}, {time.perf_counter() - began:.0f} s")
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)
    return {"wood_prompts": wood, "plain_prompts": plain}


def save(parts, out: Path, meta: dict) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its note on casting with to(): nothing here is kept in float32
    pipe = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.to(torch.float16)  # half the size on disk; vidiff loads it back in its own dtype
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")


def train(
    out: Path = DEFAULT_OUT,
    vae_steps: int = VAE_STEPS,
    unet_steps: int = UNET_STEPS,
    shift_weight: float = SHIFT_WEIGHT,
    log=print,
) -> dict:
    began = time.perf_counter()
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    parts = tiny_parts(SEED)

    train_vae(parts.vae, rng, vae_steps, batch=16, crop=64, kl_weight=1e-4, shift_weight=shift_weight, log=log)
    vae_s = time.perf_counter() - began

    latents, stds, style = encode_dataset(parts.vae, np.random.default_rng(SEED + 1), count=384, size=192)
    spread = float(latents.std())
    parts.vae.register_to_config(scaling_factor=1.0 / spread)
    log(f"latents: std {spread:.3f}, so scaling_factor {1 / spread:.4f}; posterior std {float(stds.mean()):.4f}")
    data_s = time.perf_counter() - began - vae_s

    prompts = train_unet(parts, latents, stds, style, unet_steps, batch=32, crop=16, log=log)
    seconds = time.perf_counter() - began
    meta = {
        "script": "benchmarks/train_tiny.py",
        "seed": SEED,
        "vae_steps": vae_steps,
        "unet_steps": unet_steps,
        "shift_weight": shift_weight,
        "scaling_factor": 1.0 / spread,
        **prompts,
        "seconds": {"vae": round(vae_s, 1), "latents": round(data_s, 1), "unet": round(seconds - vae_s - data_s, 1),
                    "total": round(seconds, 1)},  # fmt: skip
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    save(parts, out, meta)
    log(f"trained in {seconds:.0f} s; saved {out}")
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the model folder (default vidiff/models/tiny_trained)")
    parser.add_argument("--vae-steps", type=int, default=VAE_STEPS, help=f"default {VAE_STEPS}")
    parser.add_argument("--unet-steps", type=int, default=UNET_STEPS, help=f"default {UNET_STEPS}")
    parser.add_argument("--shift-weight", type=float, default=SHIFT_WEIGHT,
                        help=f"weight of the VAE's shift-consistency term (default {SHIFT_WEIGHT}; 0 leaves it out)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: deterministic, and kind to a shared machine)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    train(args.out, args.vae_steps, args.unet_steps, args.shift_weight, log=lambda text: print(text, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
