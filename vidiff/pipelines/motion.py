"""The motion-window processor: an AnimateDiff motion UNet denoises the frames of a shot in windows of
`context` frames together, each window sharing `context_overlap` frames with the one before it.

A window that is a whole clip is computed exactly as diffusers' AnimateDiffVideoToVideoPipeline
computes it with `generator=torch.Generator("cpu").manual_seed(seed)`: one generator draws the VAE
sample of every frame of the window, then the starting noise of every frame, then any sampler noise.
Each window draws from its own generator, seeded as the `noise` setting says for its first new frame
(with the default, fixed noise, every window starts from the same noise: FreeNoise's observation that
reused noise keeps long videos consistent).

How windows overlap, streamed: AnimateDiff-Evolved and FreeNoise denoise every window at every step
and average the overlapping frames' latents, which needs the whole clip's latents at every step, so
nothing can be written until the last frame is read. Here a window's frames are written as soon as
it is done, so they are never revised: instead the next window takes the last `context_overlap`
frames of this one as its first frames, and at every step their latents are set to this window's
latents for them at that step (a blend of weight 1: they are already written). The motion module
thus sees the new frames continue the ones before at every noise level, and memory is bounded by one
window plus the overlap frames' latents at each step, which the state carries (and the work folder
keeps, so a run resumes at a window's edge bit-identically).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..errors import VidiffError
from ..models.ip_adapter import set_style_scale
from ..models.parts import ModelParts
from ..settings.config import Config
from ..settings.keyframes import Timeline
from ..temporal.noise import noise_seed
from .conditioning import Conditioner
from .latents import LatentCodec
from .samplers import get_timesteps, make_scheduler, step_kwargs
from .state import FrameResult


@dataclass
class MotionState:
    """What the next window of a shot needs from this one: its last frames (the overlap) as sources and
    as latents at every step of its sampler schedule."""

    sources: list[np.ndarray]  # the overlap frames' sources (ControlNets make their control images again)
    timesteps: torch.Tensor  # (steps,) this window's schedule
    trajectory: torch.Tensor  # (steps, 1, C, overlap, h, w): the overlap frames' latents entering each step
    final: torch.Tensor  # (1, C, overlap, h, w): their denoised latents


class MotionProcessor:
    """Holds what is the same for every window of a video: conditioning, sampler, VAE, the motion UNet."""

    def __init__(self, parts: ModelParts, config: Config, fps: float | None = None, shot_firsts=(0,)):
        """`shot_firsts`: the first frame of every shot of the run, where a window holds only new frames."""
        if parts.motion_adapter is None or not hasattr(parts.unet.config, "motion_max_seq_length"):
            raise VidiffError("motion windows need a motion UNet: load the parts with load_parts(..., motion_adapter=...)")
        longest = parts.unet.config.motion_max_seq_length
        if config.context > longest:
            raise VidiffError(
                f"--context {config.context} is longer than the motion adapter's {longest} frames; lower --context"
            )
        self.parts, self.config = parts, config
        self.timeline = Timeline(config, fps)
        self.scheduler = make_scheduler(config.scheduler, parts.scheduler_config)
        self.conditioner = Conditioner(parts, config)
        self.latents = LatentCodec(parts, compile=config.compile)
        self.unet = torch.compile(parts.unet) if config.compile else parts.unet
        self.shot_firsts = set(shot_firsts)
        self.batchable = True  # a window's frames go through the model together, whatever --batch-size says

    def window_end(self, first: int, start: int, limit: int) -> int:
        """A shot's first window is `context` new frames; each later one, `context - context_overlap`
        new frames after the overlap it carries over."""
        new = self.config.context if first in self.shot_firsts else self.config.context - self.config.context_overlap
        return min(first + new, limit)

    @torch.no_grad()
    def process(self, frames: list[np.ndarray], first: int, state: MotionState | None = None) -> list[FrameResult]:
        """Stylise the window's new frames (indices first, first + 1, ...), after the overlap frames in `state`."""
        parts, config, scheduler = self.parts, self.config, self.scheduler
        carried = 0 if state is None else len(state.sources)
        sources = ([] if state is None else list(state.sources)) + list(frames)
        values = [self.timeline.at(index) for index in range(first - carried, first + len(frames))]
        lead = self.timeline.at(first)  # the window's sampler settings are its first new frame's

        # 1. The timesteps of this strength (which also resets the sampler)
        timesteps = get_timesteps(scheduler, config.steps, lead.strength, parts.device)

        # 2. The new frames' starting latents, as the diffusers pipeline makes a whole clip's: one generator
        # draws every frame's VAE sample, then every frame's noise
        generator = torch.Generator("cpu").manual_seed(noise_seed(lead.seed, first, config.noise))
        latents = self.latents.encode(list(frames), [generator])
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        latents = scheduler.add_noise(latents, noise, timesteps[:1])
        if carried:
            latents = torch.cat([self._carried_start(state, timesteps, generator, latents), latents])
        latents = _as_video(latents)

        # 3. Each frame's conditioning and guidance
        do_cfg = self.conditioner.uses_cfg(lead.guidance)
        conditioning = self.conditioner.prepare(sources, values, do_cfg, lead.control_scales)
        if self.conditioner.style is not None:
            # the motion UNet repeats the style image's embeddings over the frames itself
            conditioning.image_embeds = self.conditioner.style_embeds(1, do_cfg)
            set_style_scale(parts.unet, lead.style_scale)
        guidance = torch.tensor([v.guidance for v in values], device=parts.device, dtype=latents.dtype)
        guidance = guidance.view(1, 1, -1, 1, 1)
        extra = {}
        if self.conditioner.time_cond_dim is not None:
            extra["timestep_cond"] = self.conditioner.guidance_embedding(lead.guidance)

        # 4. Denoise the window together, the overlap frames held to the previous window's at every step
        keep = min(config.context_overlap, len(sources))
        trajectory, kwargs = [], step_kwargs(scheduler, [generator])
        for t in timesteps:
            if carried:
                latents = _pinned(latents, state, t, carried)
            trajectory.append(latents[:, :, len(sources) - keep :].clone())
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = scheduler.scale_model_input(model_input, t)
            output = self.unet(
                model_input, t, encoder_hidden_states=conditioning.prompt_embeds, return_dict=False,
                **extra, **self.conditioner.unet_extras(conditioning, _as_frames(model_input), t),
            )[0]  # fmt: skip
            if do_cfg:
                uncond, text = output.chunk(2)
                output = uncond + guidance * (text - uncond)
            latents = scheduler.step(output, t, latents, **kwargs, return_dict=False)[0]
        if carried:
            latents = torch.cat([state.final.to(latents.dtype), latents[:, :, carried:]], dim=2)

        # 5. Decode the new frames; the state holds the overlap for the next window
        images = self.latents.decode(_as_frames(latents)[carried:], first)
        after = MotionState(
            sources=sources[len(sources) - keep :], timesteps=timesteps.cpu(),
            trajectory=torch.stack(trajectory), final=latents[:, :, len(sources) - keep :].clone(),
        )  # fmt: skip
        last = len(images) - 1
        return [
            # only a window's last frame carries the state: a run resumes at windows' edges
            FrameResult(image=image, state=after if offset == last else None, new_shot=state is None and offset == 0)
            for offset, image in enumerate(images)
        ]

    def _carried_start(self, state: MotionState, timesteps, generator, latents) -> torch.Tensor:
        """The overlap frames' starting latents, (carried, C, h, w): the previous window's at this window's
        first timestep, or (with keyframed strength rising, a timestep it didn't pass) its result noised again."""
        found = _step_of(state.timesteps, timesteps[0])
        if found is not None:
            return _as_frames(state.trajectory[found].to(latents.device, latents.dtype))
        final = _as_frames(state.final.to(latents.device, latents.dtype))
        noise = randn_tensor(final.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        return self.scheduler.add_noise(final, noise, timesteps[:1])

    def export_state(self, state: MotionState, with_memory: bool = True) -> dict:
        """`state` as plain CPU tensors, for the work folder."""
        # no overlap: no sources (np.stack needs one)
        sources = torch.from_numpy(np.stack(state.sources)) if state.sources else torch.zeros(0, dtype=torch.uint8)
        return {"sources": sources, "timesteps": state.timesteps.cpu(),
                "trajectory": state.trajectory.cpu(), "final": state.final.cpu()}  # fmt: skip

    def import_state(self, data: dict) -> MotionState:
        device = self.parts.device
        return MotionState(
            sources=list(data["sources"].numpy()), timesteps=data["timesteps"],
            trajectory=data["trajectory"].to(device), final=data["final"].to(device),
        )  # fmt: skip

    def close(self) -> None:
        """Nothing to undo: the motion UNet was built when the parts were loaded."""

    def __enter__(self) -> "MotionProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_video(latents: torch.Tensor) -> torch.Tensor:
    """(frames, C, h, w) -> (1, C, frames, h, w), the motion UNet's layout."""
    return latents.unsqueeze(0).permute(0, 2, 1, 3, 4)


def _as_frames(latents: torch.Tensor) -> torch.Tensor:
    """(batch, C, frames, h, w) -> (batch × frames, C, h, w), batch by batch: the per-frame parts' layout."""
    batch, channels, frames, height, width = latents.shape
    return latents.permute(0, 2, 1, 3, 4).reshape(batch * frames, channels, height, width)


def _step_of(timesteps: torch.Tensor, t) -> int | None:
    """The index of timestep `t` in a window's schedule, or None if that window didn't pass it."""
    found = (timesteps == t.cpu()).nonzero()
    return int(found[0, 0]) if len(found) else None


def _pinned(latents: torch.Tensor, state: MotionState, t, carried: int) -> torch.Tensor:
    """The window's latents with its first `carried` frames set to the previous window's at timestep `t`."""
    found = _step_of(state.timesteps, t)
    if found is None:
        return latents
    held = state.trajectory[found, :, :, -carried:].to(latents.device, latents.dtype)
    return torch.cat([held, latents[:, :, carried:]], dim=2)
