"""Stylise frames with Stable Diffusion img2img: prepare once per video, then a plain per-frame step.

With noise = "fixed" and blend = 0 each frame is computed exactly as diffusers'
StableDiffusionImg2ImgPipeline computes it with `generator=torch.Generator("cpu").manual_seed(seed)`:
the same generator draws the VAE's latent sample, then the noise, then any sampler noise.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from .config import Config
from .models import ModelParts
from .schedulers import make_scheduler
from .temporal import blend_latents, noise_seed


@dataclass
class FrameResult:
    image: np.ndarray  # RGB uint8, (height, width, 3)
    latents: torch.Tensor  # the final denoised latents, what the next frame blends in


class Stylizer:
    """Holds what is the same for every frame of a video: prompt embeddings, sampler, guidance."""

    def __init__(self, parts: ModelParts, config: Config):
        self.parts, self.config = parts, config
        self.scheduler = make_scheduler(config.scheduler, parts.scheduler_config)
        # an LCM-distilled UNet takes the guidance as an embedding instead of running CFG
        self.time_cond_dim = parts.unet.config.time_cond_proj_dim
        self.do_cfg = config.guidance > 1 and self.time_cond_dim is None
        self.prompt_embeds = self._encode_prompts()
        self.timestep_cond = self._guidance_embedding() if self.time_cond_dim is not None else None
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        self._step_takes_eta = "eta" in step_params
        self._step_takes_generator = "generator" in step_params

    # 1. Encode the prompts, once per video
    @torch.no_grad()
    def _encode(self, text: str) -> torch.Tensor:
        tokenizer, encoder = self.parts.tokenizer, self.parts.text_encoder
        tokens = tokenizer(
            text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.parts.device)
        embeds = encoder(tokens.input_ids.to(self.parts.device), attention_mask=mask)[0]
        return embeds.to(dtype=encoder.dtype, device=self.parts.device)

    def _encode_prompts(self) -> torch.Tensor:
        prompt = self._encode(self.config.prompt)
        if not self.do_cfg:
            return prompt
        # unconditional first, as diffusers orders the CFG batch
        return torch.cat([self._encode(self.config.negative_prompt), prompt])

    def _guidance_embedding(self, embedding_dim: int | None = None) -> torch.Tensor:
        """The guidance scale as a sinusoidal embedding (LCM's w-conditioning), as diffusers computes it."""
        dim = embedding_dim or self.time_cond_dim
        w = torch.tensor([self.config.guidance - 1.0]) * 1000.0
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
        emb = w.to(torch.float32)[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
        if dim % 2 == 1:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb.to(device=self.parts.device, dtype=self.parts.dtype)

    # 2. The timesteps of a strength-limited run; setting them also resets the sampler's state
    def _reset_timesteps(self) -> torch.Tensor:
        steps, scheduler = self.config.steps, self.scheduler
        scheduler.set_timesteps(steps, device=self.parts.device)
        t_start = steps - min(int(steps * self.config.strength), steps)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        return scheduler.timesteps[t_start * scheduler.order :]

    def _to_tensor(self, frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(frame).to(torch.float32).div(255.0).permute(2, 0, 1).unsqueeze(0)
        return (image * 2.0 - 1.0).to(device=self.parts.device, dtype=self.parts.dtype)

    @staticmethod
    def _to_image(decoded: torch.Tensor) -> np.ndarray:
        image = (decoded / 2 + 0.5).clamp(0, 1)
        image = image.cpu().permute(0, 2, 3, 1).float().numpy()[0]
        return (image * 255).round().astype(np.uint8)

    @torch.no_grad()
    def __call__(self, frame: np.ndarray, frame_index: int, prev_latents: torch.Tensor | None = None) -> FrameResult:
        """Stylise one RGB uint8 frame; `prev_latents` is the previous frame's result, for blending."""
        parts, config = self.parts, self.config
        vae = parts.vae
        # a fresh CPU generator per frame: the same seed gives the same noise on any device
        generator = torch.Generator("cpu").manual_seed(noise_seed(config.seed, frame_index, config.noise))
        timesteps = self._reset_timesteps()

        # 3. Encode the frame, then blend in the previous frame (before noising)
        latents = vae.encode(self._to_tensor(frame)).latent_dist.sample(generator) * vae.config.scaling_factor
        if prev_latents is not None and config.blend > 0:
            latents = blend_latents(prev_latents, latents, config.blend)

        # 4. Noise to the strength's starting timestep
        noise = randn_tensor(latents.shape, generator=generator, device=parts.device, dtype=latents.dtype)
        latents = self.scheduler.add_noise(latents, noise, timesteps[:1])

        # 5. Denoise
        step_kwargs = {}
        if self._step_takes_eta:
            step_kwargs["eta"] = 0.0
        if self._step_takes_generator:
            step_kwargs["generator"] = generator
        for t in timesteps:
            model_input = torch.cat([latents] * 2) if self.do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = parts.unet(
                model_input,
                t,
                encoder_hidden_states=self.prompt_embeds,
                timestep_cond=self.timestep_cond,
                return_dict=False,
            )[0]
            if self.do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + config.guidance * (text - uncond)
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]

        # 6. Decode
        decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
        return FrameResult(image=self._to_image(decoded), latents=latents)
