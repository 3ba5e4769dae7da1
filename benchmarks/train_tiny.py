"""Train the tiny model offline on the CPU, so that the temporal benchmark has a model that behaves
like a real one: it reproduces its input, and restyles it with detail that depends on the noise.

    python benchmarks/train_tiny.py [--out benchmarks/tiny-trained] [--vae-steps N] [--unet-steps N]

The architecture is vidiff.models.tiny_parts()'s (an 8× VAE with 4 latent channels, a two-level
cross-attention UNet, a two-layer CLIP text encoder), initialised by it with seed 0. Trained on
synthetic pictures drawn here (octaves of smooth noise in random colours, textured shapes, gradients:
the kind of content the benchmark clips have, never the clips themselves):

1. the VAE as an autoencoder (L1 on the pixels and on their gradients, plus a small KL term), after
   which its scaling_factor is set to 1 / std of the latents, as Stable Diffusion's was chosen, so
   that scaled latents have unit spread and img2img's noise level means what it means for SD;
2. the UNet as an epsilon-prediction denoiser of those scaled latents, on SD 1.5's noise schedule
   (vidiff.models.SD15_SCHEDULER_CONFIG), conditioned on the text encoder's hidden states. Half the
   pictures are shown as they are, captioned with plain prompts ("", "a photo", the benchmark's
   negative prompt...); the other half are shown as "wooden carvings" (their light mapped onto a
   walnut palette, with wood grain of a random direction, spacing and phase), captioned with
   wood-carving prompts (the benchmark's among them). Since the grain is random, nothing in a picture
   says where its grain goes: the model learns to draw grain from the noise, and img2img with a wood
   prompt restyles the picture with grain that depends on the seed, as a real model's texture does.

The text encoder is not trained: it keeps tiny_parts()'s random weights, which tell the prompts
apart well enough for the UNet to learn them (SD's CLIP encoder was frozen too).

Deterministic: the same seed and step counts give the same weights on the same machine (one torch
thread; the pictures come from a seeded numpy generator). The weights are saved as float16
safetensors in a diffusers folder that `vidiff --model benchmarks/tiny-trained` loads.
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

from vidiff.models import SD15_SCHEDULER_CONFIG, tiny_parts  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent / "tiny-trained"
SEED = 0

# What the UNet learns to associate with the wood style, and with pictures as they are.
STYLE_PROMPTS = (
    "a wooden carving, hand-carved from walnut, visible wood grain",  # the benchmark's prompt
    "a wooden carving",
    "wood carving, walnut, wood grain",
    "hand-carved wooden sculpture",
)
PLAIN_PROMPTS = (
    "",
    "a photo",
    "photo, blurry, low quality",  # the benchmark's negative prompt
    "a picture",
)

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
            np.clip(rng.uniform(40, 200) + rng.uniform(10, 60) * tint, 0, 255),
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
    """The picture as a walnut carving: its light on a wood palette, grain of a random direction and phase."""
    height, width = image.shape[:2]
    luma = (image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)) / 255
    luma = cv2.GaussianBlur(luma, (0, 0), 0.8)  # a carving loses the very finest detail
    tone = 0.5 + 1.15 * (luma - luma.mean())
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(18, 36)
    wobble = rng.uniform(1.5, 4.0) * smooth_noise(rng, height, width, rng.uniform(14, 28))
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period + wobble + rng.uniform(0, 2 * math.pi)
    grain = np.sin(phase)
    grain = np.sign(grain) * np.abs(grain) ** 0.6  # sharper rings than a plain sine
    tone = np.clip(tone + 0.14 * grain, 0, 1) * (len(PALETTE) - 1)
    low = np.clip(np.floor(tone).astype(int), 0, len(PALETTE) - 2)
    frac = (tone - low)[..., None]
    rgb = PALETTE[low] * (1 - frac) + PALETTE[low + 1] * frac
    return np.clip(rgb, 0, 255).astype(np.uint8)


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


def train_vae(vae, rng: np.random.Generator, steps: int, batch: int, crop: int, kl_weight: float, log) -> None:
    vae.train().requires_grad_(True)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=1e-3, weight_decay=0.0)
    began = time.perf_counter()
    for step in range(steps):
        # half the batch plain pictures, half wooden ones: the VAE must reproduce both
        images = [picture(rng, crop) for _ in range(batch)]
        images = [wooden(im, rng) if i % 2 else im for i, im in enumerate(images)]
        x = to_tensor(images)
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        (gy_x, gx_x), (gy_y, gx_y) = gradients(x), gradients(y)
        recon = (y - x).abs().mean() + 0.5 * ((gy_y - gy_x).abs().mean() + (gx_y - gx_x).abs().mean())
        kl = posterior.kl().mean() / posterior.mean[0].numel()
        loss = recon + kl_weight * kl
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, steps, 1e-3)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"vae step {step}/{steps}: recon {recon.item():.4f}, kl {kl.item():.3f}, {time.perf_counter() - began:.0f} s")
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


@torch.no_grad()
def embed(parts, prompts: tuple[str, ...]) -> torch.Tensor:
    tokens = parts.tokenizer(list(prompts), padding="max_length", max_length=parts.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")  # fmt: skip
    return parts.text_encoder(tokens.input_ids)[0]


def train_unet(parts, latents, stds, style, steps: int, batch: int, crop: int, log) -> None:
    """Epsilon prediction on SD 1.5's schedule: x_t = √ᾱ_t·x_0 + √(1 − ᾱ_t)·ε, loss |ε̂ − ε|²."""
    from diffusers import DDPMScheduler

    unet = parts.unet
    scheduler = DDPMScheduler.from_config(SD15_SCHEDULER_CONFIG)
    alphas = scheduler.alphas_cumprod.float()
    scale = parts.vae.config.scaling_factor
    style_embeds, plain_embeds = embed(parts, STYLE_PROMPTS), embed(parts, PLAIN_PROMPTS)
    unet.train().requires_grad_(True)
    optimiser = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.0)
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
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        which = torch.randint(0, len(STYLE_PROMPTS), (batch,), generator=generator)
        labels = style[index]
        cond = torch.where(labels.view(-1, 1, 1).bool(), style_embeds[which], plain_embeds[which])
        pred = unet(noisy, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, noise)
        for group in optimiser.param_groups:
            group["lr"] = lr_at(step, steps, 1e-3)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimiser.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"unet step {step}/{steps}: loss {loss.item():.4f}, {time.perf_counter() - began:.0f} s")
    unet.eval().requires_grad_(False)


def save(parts, out: Path, meta: dict) -> None:
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=PNDMScheduler.from_config(SD15_SCHEDULER_CONFIG), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.to(torch.float16)  # half the size on disk; vidiff loads it back in its own dtype
    out.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(str(out), safe_serialization=True)
    (out / "training.json").write_text(json.dumps(meta, indent=2) + "\n")


def train(out: Path, vae_steps: int, unet_steps: int, log=print) -> dict:
    began = time.perf_counter()
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    parts = tiny_parts(SEED)
    parts.text_encoder.eval().requires_grad_(False)

    train_vae(parts.vae, rng, vae_steps, batch=16, crop=64, kl_weight=1e-4, log=log)
    vae_s = time.perf_counter() - began

    latents, stds, style = encode_dataset(parts.vae, np.random.default_rng(SEED + 1), count=384, size=192)
    spread = float(latents.std())
    parts.vae.register_to_config(scaling_factor=1.0 / spread)
    log(f"latents: std {spread:.3f}, so scaling_factor {1 / spread:.4f}; posterior std {float(stds.mean()):.4f}")
    data_s = time.perf_counter() - began - vae_s

    train_unet(parts, latents, stds, style, unet_steps, batch=32, crop=16, log=log)
    seconds = time.perf_counter() - began
    meta = {
        "script": "benchmarks/train_tiny.py",
        "seed": SEED,
        "vae_steps": vae_steps,
        "unet_steps": unet_steps,
        "scaling_factor": 1.0 / spread,
        "style_prompts": list(STYLE_PROMPTS),
        "plain_prompts": list(PLAIN_PROMPTS),
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
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the model folder (default benchmarks/tiny-trained)")
    parser.add_argument("--vae-steps", type=int, default=800)
    parser.add_argument("--unet-steps", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: deterministic, and kind to a shared machine)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    train(args.out, args.vae_steps, args.unet_steps, log=lambda text: print(text, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
