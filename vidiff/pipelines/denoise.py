"""The sampler loop, with step hooks: techniques that act inside the loop (latent fusion, cross-frame
attention memory) plug in as hooks instead of branching it, as diffusers' callback_on_step_end does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..temporal.attention import CrossFrameMemory
from ..temporal.blending import blend_latents
from .samplers import noise_level, output_for, predicted_original


class StepHook:
    """Called around each denoising step of a window; every method may be left as it is."""

    def before_model(self, step: int, t) -> None:
        """Before the UNet runs at step `step` (0 is the window's first)."""

    def after_guidance(self, step: int, t, output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """The guided model output, which the hook may change; `sample` is the variance-preserving input."""
        return output

    def end(self) -> None:
        """After the window's last step."""


@dataclass
class Denoiser:
    """What every window's loop calls: the UNet, the sampler, and the UNet's extra inputs per step."""

    unet: Callable
    scheduler: object
    extras: Callable  # (conditioning, model_input, t) -> the UNet's keyword arguments beyond the text

    def __call__(self, latents, timesteps, conditioning, guidance, do_cfg, timestep_cond, step_kwargs,
                 hooks: list[StepHook] = ()):  # fmt: skip
        """Denoise `latents` over `timesteps`; `guidance` is a (frames, 1, 1, 1) tensor of CFG scales."""
        frames = latents.shape[0]
        for step, t in enumerate(timesteps):
            for hook in hooks:
                hook.before_model(step, t)
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            output = self.unet(
                model_input,
                t,
                encoder_hidden_states=conditioning.prompt_embeds,
                timestep_cond=timestep_cond,
                return_dict=False,
                **self.extras(conditioning, model_input, t),
            )[0]
            if do_cfg:
                uncond, text = output.chunk(2)
                output = uncond + guidance * (text - uncond)
            for hook in hooks:
                # the sample as the UNet saw it: variance-preserving whatever the sampler's own scale
                output = hook.after_guidance(step, t, output, model_input[:frames])
            latents = self.scheduler.step(output, t, latents, **step_kwargs, return_dict=False)[0]
        for hook in hooks:
            hook.end()
        return latents


class FusionHook(StepHook):
    """Cross-frame latent fusion: over the first share of the steps, each frame's estimate of the clean
    frame is pulled towards its target (the previous output warped onto it) by a per-pixel weight."""

    def __init__(self, scheduler, targets: torch.Tensor, weights: torch.Tensor, steps: int, fusion_end: float):
        self.scheduler, self.targets, self.weights = scheduler, targets, weights
        self.last = fusion_end * steps  # steps at or after this run free, to redraw detail
        self.begin = getattr(scheduler, "begin_index", None) or 0

    def after_guidance(self, step, t, output, sample):
        if step >= self.last:
            return output
        return self.fuse(output, sample, t, self.begin + step)

    def fuse(self, output, sample, t, position):
        """The model output with its estimate of the clean frames pulled towards the targets."""
        alpha, sigma = noise_level(self.scheduler, t, position)
        kind = self.scheduler.config.prediction_type
        # in float32: at the first steps σ is large and x0 = (x − σ·ε)/α amplifies fp16 rounding
        original, sample32 = output.float(), sample.float()
        estimate = predicted_original(original, sample32, alpha, sigma, kind)
        fused = blend_latents(self.targets, estimate, self.weights)
        return output_for(fused, sample32, alpha, sigma, kind).to(output.dtype)


class CrossFrameHook(StepHook):
    """Keeps the cross-frame attention memory in step with the loop: which step's hidden states to keep."""

    def __init__(self, memory: CrossFrameMemory, frames: int, starts_shot: bool):
        self.memory = memory
        memory.start_batch(frames, starts_shot)

    def before_model(self, step, t):
        self.memory.step = step

    def end(self):
        self.memory.end_batch()
