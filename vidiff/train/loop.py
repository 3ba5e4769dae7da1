"""The training loop: a LoRA on the UNet's attention (and optionally the text encoders), as diffusers'
train_text_to_image_lora.py and train_text_to_image_lora_sdxl.py train one, with crash-safe
checkpoints that a re-run resumes from, reaching the weights an uninterrupted run reaches."""

from __future__ import annotations

import io
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import Interrupted, VidiffError
from ..io.atomic import write_atomic
from ..models.device import is_out_of_memory
from ..models.parts import KIND_NAMES, ModelParts, _first_line
from .config import TrainConfig
from .data import Batch, DataSet, bucketed, scan_folder
from .export import TEXT_TARGETS, UNET_TARGETS, check_preset_path, lora_layers, save_lora, write_preset
from .report import draw_sample, loss_plot_path, samples_folder, write_loss_plot, write_sample

log = logging.getLogger("vidiff")
CHECKPOINT_VERSION = 1


@dataclass
class TrainResult:
    """What a training run wrote, and how it went; summary() is what the command line prints."""

    out: Path
    steps: int
    resumed_at: int
    seconds: float
    losses: list[float]
    loss_plot: Path
    samples: list[Path] = field(default_factory=list)
    token: str | None = None
    preset: Path | None = None

    def summary(self) -> str:
        done = self.steps - self.resumed_at
        rate = done / self.seconds if self.seconds > 0 else float("nan")
        tail = self.losses[-max(1, len(self.losses) // 10):]
        first = self.losses[: max(1, len(self.losses) // 10)]
        lines = [
            f"wrote {self.out} ({self.steps} steps, {rate:.2f} steps/s; loss {np.mean(first):.4f} "
            f"in the first tenth, {np.mean(tail):.4f} in the last)",
            f"loss chart {self.loss_plot}",
            f"use it:    vidiff stylize IN OUT --lora {self.out} --prompt \"..., {self.token or 'your caption words'}\"",
        ]
        if self.preset is not None:
            lines.append(f"preset     {self.preset}: vidiff stylize IN OUT --preset {self.preset}")
        return "\n".join(lines)


def train_lora(images: str | os.PathLike, out: str | os.PathLike, config: TrainConfig | None = None, *,
               parts: ModelParts | None = None, progress: bool = False,
               cancel: threading.Event | None = None, **settings) -> TrainResult:  # fmt: skip
    """Train a LoRA on the pictures in `images` and write it to `out` (.safetensors).

    `settings` override `config`'s fields. `parts` (optional) are model parts already loaded; the LoRA
    layers are added to them, so don't share them with a run. Setting `cancel` stops after the step in
    progress, saves a checkpoint and raises Interrupted; the same call resumes from it.
    """
    # 1. Check the settings, OUT and the pictures: everything the user can get wrong fails before the model loads
    config = (config or TrainConfig()).replace(**settings).validate()
    out = Path(out)
    _check_out(out, config.overwrite)
    if Path(images).is_dir() and out.resolve().parent == Path(images).resolve():
        raise VidiffError(f"OUT {out} is in IMAGES {images}: its loss chart would join the training pictures; write it elsewhere")
    preset = check_preset_path(config.preset, config.overwrite) if config.preset else None
    pictures = scan_folder(images, config.token)

    # 2. The model, and the pictures in the buckets its UNet's size grid allows
    if parts is None:
        from ..models.loading import load_parts

        parts = load_parts(config.model, config.device, config.dtype, config.allow_pickle)
    _check_trainable(parts)
    grid = _vae_factor(parts) * 2 ** (len(parts.unet.config.block_out_channels) - 1)
    resolution = config.resolution or parts.unet.config.sample_size * _vae_factor(parts)
    data = DataSet(bucketed(pictures, resolution, grid), config.batch_size, config.repeats, config.seed, config.flip)
    log.info("training on\n%s", data.summary(resolution))

    # 3. The LoRA layers and their optimizer, from the last checkpoint if one of this run is there
    trainer = Trainer(parts, config)
    checkpoint = checkpoint_path(out)
    fingerprint = {**config.fingerprint(), "resolution": resolution, "images": _fingerprint_pictures(pictures)}
    start, losses = _resume(trainer, checkpoint, fingerprint, config.restart)
    if start:
        log.info("resuming at step %d of %d", start, config.steps)

    # 4. The steps, with samples and checkpoints
    began, samples = time.monotonic(), []
    bar = tqdm(total=config.steps, initial=start, unit="step", disable=not progress, dynamic_ncols=True, leave=False)
    with bar:
        for step in range(start, config.steps):
            try:
                losses.append(trainer.step(data.batch(step), step))
            except RuntimeError as err:
                if not is_out_of_memory(err):
                    raise
                raise VidiffError(
                    f"out of memory at step {step + 1}: lower --batch-size or --resolution, or give "
                    "--gradient-checkpointing; the same command resumes from the last checkpoint"
                ) from None
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
            bar.update()
            done = step + 1
            if config.sample_every and done % config.sample_every == 0:
                prompt = config.sample_prompt or pictures[0].caption
                samples.append(trainer.sample(prompt, resolution, samples_folder(out), done))
            stop = cancel is not None and cancel.is_set()
            if done < config.steps and (stop or config.checkpoint_every and done % config.checkpoint_every == 0):
                _write_checkpoint(checkpoint, trainer.state(done, losses, fingerprint))
            if stop and done < config.steps:
                raise Interrupted(f"stopped at step {done} of {config.steps}; the checkpoint is saved: run the same command to resume")
    seconds = time.monotonic() - began

    # 5. The LoRA file, the loss chart and the preset; then the checkpoint goes
    save_lora(parts, out, config.format)
    write_loss_plot(losses, loss_plot_path(out))
    if preset is not None:
        model = str(Path(config.model).resolve()) if Path(config.model).exists() else config.model
        prompt = config.sample_prompt or config.token or pictures[0].caption
        write_preset(preset, f"Trained by vidiff train on {len(pictures)} pictures of {Path(images).resolve().name}, "
                     f"{config.steps} steps", {"model": model, "lora": [str(out.resolve())], "prompt": prompt})  # fmt: skip
    checkpoint.unlink(missing_ok=True)
    return TrainResult(out, config.steps, start, seconds, losses, loss_plot_path(out), samples, config.token, preset)


def _resume(trainer: "Trainer", checkpoint: Path, fingerprint: dict, restart: bool) -> tuple[int, list[float]]:
    """The step to start at and the losses so far: from the checkpoint if it was made by this run's settings
    and pictures (its LoRA and optimizer state loaded into `trainer`), else from nothing."""
    if not checkpoint.exists():
        return 0, []
    if restart:
        checkpoint.unlink()
        return 0, []
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as err:  # written atomically, so only a foreign or damaged file gets here
        log.warning("the checkpoint %s could not be read (%s): starting again", checkpoint, _first_line(err))
        return 0, []
    if saved.get("version") != CHECKPOINT_VERSION or saved.get("fingerprint") != fingerprint:
        log.warning("the checkpoint %s was made with other settings or pictures: starting again", checkpoint)
        return 0, []
    trainer.load_state(saved)
    return saved["step"], list(saved["losses"])


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".checkpoint")


class Trainer:
    """The LoRA layers on the parts, their optimizer, and one training step."""

    def __init__(self, parts: ModelParts, config: TrainConfig):
        from diffusers import DDPMScheduler
        from peft import LoraConfig, inject_adapter_in_model

        self.parts, self.config = parts, config
        self.noise_scheduler = DDPMScheduler.from_config(parts.scheduler_config)
        self.prediction = self.noise_scheduler.config.prediction_type
        if self.prediction not in ("epsilon", "v_prediction"):
            raise VidiffError(f"model {parts.name} predicts {self.prediction}; vidiff trains epsilon and v-prediction models")
        self.text_encoders = [e for e in (parts.text_encoder, parts.text_encoder_2) if e is not None]
        modules = [parts.unet] + (self.text_encoders if config.text_encoder else [])
        # the LoRA's A matrices start random: drawn from a seeded generator, never the global one
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            parts.unet.add_adapter(LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                              target_modules=UNET_TARGETS))  # fmt: skip
            for encoder in modules[1:]:
                # peft directly, as diffusers' LoRA loader does: transformers' add_adapter wants a newer peft
                inject_adapter_in_model(LoraConfig(r=config.rank, lora_alpha=config.rank, init_lora_weights="gaussian",
                                                   target_modules=TEXT_TARGETS), encoder)  # fmt: skip
        self.modules = modules
        self.params = [p for m in modules for p in m.parameters() if p.requires_grad]
        for p in self.params:  # the frozen model may be half precision; the LoRA learns in fp32
            p.data = p.data.float()
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
        device = parts.device
        self.autocast = device.type == "cuda" and parts.dtype != torch.float32
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast and parts.dtype == torch.float16 else None
        checkpointing = config.gradient_checkpointing
        if checkpointing is None:
            checkpointing = device.type == "cuda"
        if checkpointing:
            parts.unet.enable_gradient_checkpointing()
            for encoder in modules[1:]:
                encoder.gradient_checkpointing_enable()
        self._embeddings: dict[str, tuple] = {}

    def step(self, batch: Batch, step: int) -> float:
        """One optimiser step on `batch`; every random draw comes from (seed, step), so a resumed run repeats it."""
        for module in self.modules:
            module.train()
        loss = self.loss(batch, _step_seed(self.config.seed, step))
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        value = loss.item()
        if not math.isfinite(value):
            raise VidiffError(f"the loss became {value} at step {step + 1}: lower --lr, or train in fp32 (--dtype fp32)")
        return value

    def loss(self, batch: Batch, seed: int) -> torch.Tensor:
        """The denoising loss on `batch` with the VAE sample, noise and timesteps drawn from `seed`, as
        diffusers' scripts compute it: the scheduler's add_noise, epsilon or v-prediction target, MSE."""
        parts = self.parts
        generator = torch.Generator("cpu").manual_seed(seed)
        pixels = torch.from_numpy(batch.pixels).permute(0, 3, 1, 2).to(parts.device, parts.vae.dtype)
        with torch.no_grad():
            latents = _encode(parts, pixels, generator)
        noise = torch.randn(latents.shape, generator=generator).to(parts.device, latents.dtype)
        timesteps = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],),
                                  generator=generator).to(parts.device)  # fmt: skip
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        with torch.autocast(parts.device.type, dtype=parts.dtype, enabled=self.autocast):
            hidden, extra = self._conditioning(batch)
            prediction = parts.unet(noisy.to(parts.unet.dtype), timesteps, hidden, added_cond_kwargs=extra).sample
        return F.mse_loss(prediction.float(), target.float(), reduction="mean")

    def _conditioning(self, batch: Batch) -> tuple[torch.Tensor, dict | None]:
        """The text (and for SDXL the pooled text and the size and crop numbers) the UNet is conditioned on."""
        parts, device = self.parts, self.parts.device
        encoded = [self._encode_text(caption) for caption in batch.captions]
        hidden = torch.cat([e[0] for e in encoded])
        if parts.kind != "sdxl":
            return hidden, None
        pooled = torch.cat([e[1] for e in encoded])
        # as diffusers' SDXL script: original size, crop's top-left, target size, each (height, width)
        height, width = batch.pixels.shape[1:3]
        time_ids = torch.tensor([[*size, *crop, height, width] for size, crop in zip(batch.original_sizes, batch.crops)],
                                device=device, dtype=hidden.dtype)  # fmt: skip
        return hidden, {"text_embeds": pooled, "time_ids": time_ids}

    def _encode_text(self, caption: str) -> tuple:
        """As the pipelines encode a prompt (SDXL: both encoders' penultimate states side by side, the
        second's pooled projection). A frozen text encoder's output is kept per caption."""
        if not self.config.text_encoder and caption in self._embeddings:
            return self._embeddings[caption]
        parts = self.parts
        with torch.set_grad_enabled(self.config.text_encoder):
            if parts.kind != "sdxl":
                ids = _token_ids(parts.tokenizer, caption).to(parts.device)
                result = (parts.text_encoder(ids)[0], None)
            else:
                states, pooled = [], None
                for tokenizer, encoder in ((parts.tokenizer, parts.text_encoder), (parts.tokenizer_2, parts.text_encoder_2)):
                    output = encoder(_token_ids(tokenizer, caption).to(parts.device), output_hidden_states=True)
                    pooled = output[0]
                    states.append(output.hidden_states[-2])
                result = (torch.cat(states, dim=-1), pooled)
        if not self.config.text_encoder:
            self._embeddings[caption] = result
        return result

    def sample(self, prompt: str, resolution: int, folder: Path, step: int) -> Path:
        for module in self.modules:
            module.eval()
        image = draw_sample(self.parts, prompt, (resolution, resolution), self.config.sample_steps, self.config.seed)
        return write_sample(image, folder, step)

    def state(self, step: int, losses: list[float], fingerprint: dict) -> dict:
        return {
            "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "step": step, "losses": list(losses),
            "lora": {name: {k: v.detach().cpu() for k, v in layers.items()} for name, layers in lora_layers(self.parts).items()},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }  # fmt: skip

    def load_state(self, saved: dict) -> None:
        from peft.utils import set_peft_model_state_dict

        modules = {"unet_lora_layers": self.parts.unet, "text_encoder_lora_layers": self.parts.text_encoder,
                   "text_encoder_2_lora_layers": self.parts.text_encoder_2}  # fmt: skip
        for name, layers in saved["lora"].items():
            set_peft_model_state_dict(modules[name], layers)
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])


def _step_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, 2, step]).generate_state(1, np.uint64)[0] >> 1)


def _token_ids(tokenizer, text: str) -> torch.Tensor:
    return tokenizer(text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids  # fmt: skip


def _vae_factor(parts: ModelParts) -> int:
    return 2 ** (len(parts.vae.config.block_out_channels) - 1)


def _encode(parts: ModelParts, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scaled latents, a sample of the VAE's posterior (drawn on the CPU, so a seed means the same on any device)."""
    dist = parts.vae.encode(pixels).latent_dist
    sample = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=generator).to(dist.mean.device, dist.mean.dtype)
    shift = getattr(parts.vae.config, "shift_factor", None) or 0.0
    return ((sample - shift) * parts.vae.config.scaling_factor).to(parts.unet.dtype)


def _check_trainable(parts: ModelParts) -> None:
    if parts.kind not in KIND_NAMES:
        raise VidiffError(f"model {parts.name} is a {parts.kind} model; vidiff trains SD 1.x, 2.x and SDXL")
    names = [name for name, _ in parts.unet.named_modules()]
    if not any(name.endswith(".to_q") for name in names):
        raise VidiffError(f"model {parts.name}'s UNet has no attention layers (to_q, to_k, to_v) to train a LoRA on")
    if getattr(parts.unet, "peft_config", None):
        raise VidiffError(f"model {parts.name} already carries LoRA layers: load it fresh for each training run")


def _check_out(out: Path, overwrite: bool) -> None:
    if out.suffix.lower() != ".safetensors":
        raise VidiffError(f"OUT {out} must end in .safetensors (the file --lora reads)")
    if out.is_dir():
        raise VidiffError(f"OUT {out} is a folder; give a file name such as style.safetensors")
    if not out.parent.is_dir():
        raise VidiffError(f"OUT {out}: folder {out.parent} does not exist; create it or choose another path")
    if not os.access(out.parent, os.W_OK):
        raise VidiffError(f"OUT {out}: folder {out.parent} is not writable")
    if out.exists() and not overwrite:
        raise VidiffError(f"OUT {out} exists; give --overwrite to replace it, or another name")


def _fingerprint_pictures(pictures) -> list:
    """What changes a resumed run's data: the pictures' names, sizes, modification times and captions."""
    return [[p.path.name, list(p.size), p.path.stat().st_mtime_ns, p.caption] for p in pictures]


def _write_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, lambda file: file.write(buffer.getvalue()))
