"""The img2img processor: prepare once per video, then stylise windows of independent frames.

With noise = "fixed" and blend = 0 each frame is computed exactly as diffusers'
StableDiffusionImg2ImgPipeline computes it with `generator=torch.Generator("cpu").manual_seed(seed)`:
the same generator draws the VAE's latent sample, then the noise, then any sampler noise. SDXL
models follow StableDiffusionXLImg2ImgPipeline, and ControlNets StableDiffusion(XL)ControlNetImg2ImgPipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

import numpy as np
import torch

from ..models.ip_adapter import set_style_scale
from ..models.parts import ModelParts
from ..settings.config import Config, values_of
from ..settings.keyframes import FrameValues, Timeline
from ..temporal.attention import CrossFrameMemory, install_cross_frame_attention
from ..temporal.blending import blend_latents, flow_blend
from ..temporal.change import frame_change, is_cut
from ..temporal.color import match_colors
from ..temporal.flow import backward_flow, warp
from ..temporal.fusion import fusion_target
from ..temporal.noise import noise_seed
from .conditioning import Conditioner
from .denoise import CrossFrameHook, Denoiser, FusionHook
from .latents import LatentCodec
from .noise import prepare_noise
from .processor import batch_window_end
from .samplers import get_timesteps, make_scheduler, step_kwargs
from .state import FrameResult, TemporalState, export_state, import_state


class Img2ImgProcessor:
    """Holds what is the same for every frame of a video: conditioning, sampler, VAE, guidance.

    Use it as a context manager (or call close()) when cross-frame attention is on: it installs
    attention processors on the UNet it was given and puts the old ones back on close.
    """

    def __init__(self, parts: ModelParts, config: Config, fps: float | None = None, batch_size: int = 1,
                 find_cuts: bool = True):  # fmt: skip
        """`fps` places keyframes given in seconds; it is needed only when the config has them.
        `batch_size` is how many frames a window holds when frames don't depend on each other.
        `find_cuts` False leaves cuts to the caller: the run's shots, found before the loop, with the
        same test on the same frames."""
        self.parts, self.config = parts, config
        self.find_cuts = find_cuts and config.cuts
        self.timeline = Timeline(config, fps)
        self.scheduler = make_scheduler(config.scheduler, parts.scheduler_config)
        self.conditioner = Conditioner(parts, config)
        # frames that don't depend on the previous output can go through the model together
        self.batchable = not any(
            value > 0
            for name in ("blend", "flow_blend", "fusion")
            for value in values_of(name, getattr(config, name))
        )
        self.batch_size = batch_size if self.batchable else 1
        # compiled once per run; frames keep their shape, so a run recompiles only for a last, smaller
        # batch (or when keyframed guidance switches CFG on or off)
        self.latents = LatentCodec(parts, compile=config.compile)
        unet = torch.compile(parts.unet) if config.compile else parts.unet
        self.denoiser = Denoiser(unet, self.scheduler, self.conditioner.unet_extras)
        self.memory, self._old_processors = None, None
        if config.cross_frame_attn:
            self.memory = CrossFrameMemory()
            self._old_processors = install_cross_frame_attention(parts.unet, self.memory)

    def window_end(self, first: int, start: int, limit: int) -> int:
        return batch_window_end(first, self.batch_size, start, limit)

    def __call__(self, frame: np.ndarray, frame_index: int, state: TemporalState | None = None) -> FrameResult:
        """Stylise one RGB uint8 frame, given what the previous frames left in `state`."""
        return self.process([frame], frame_index, state)[0]

    @torch.no_grad()
    def process(
        self, frames: list[np.ndarray], first: int, state: TemporalState | None = None, indices: list[int] | None = None
    ) -> list[FrameResult]:
        """Stylise consecutive frames (indices first, first + 1, ..., or `indices` when the frames are
        some of a shot's, in order: cadence's diffused frames) through the VAE and UNet together; each
        comes out as it would alone. More than one frame needs `self.batchable`."""
        indices = indices or list(range(first, first + len(frames)))
        if len(frames) > 1 and not self.batchable:
            raise ValueError("these settings make each frame depend on the previous output: stylise one at a time")
        state = state or TemporalState()

        # 1. Per frame, in order: cuts, skips, the frame's settings, its generator and starting image
        jobs, previous = [], state
        for offset, frame in enumerate(frames):
            job = self.prepare_frame(frame, indices[offset], previous)
            jobs.append(job)
            # all a later frame of the window reads: sources, for cuts, flow and skips
            previous = TemporalState(source=frame, stylized_source=job.state.stylized_source if job.skip else frame)
        work = [job for job in jobs if not job.skip]

        # 2. The model work, in runs of frames that share a sampler schedule and a CFG batch shape
        # (a cut starts a new run where cross-frame attention must start its memory afresh)
        for group in _runs(
            work,
            key=lambda job: (job.values.strength, job.do_cfg, job.values.control_scales, job.values.style_scale),
            starts=lambda job: self.memory is not None and job.new_shot,
        ):
            self.denoise(group)

        # 3. In order again: colours held to the shot's first frame, skipped frames, the state chain
        results, previous = [], state
        for job in jobs:
            if job.skip:  # the source barely changed since the last stylised frame: reuse its output
                next_state = replace(previous, source=job.frame)
                results.append(FrameResult(image=previous.image, state=next_state, new_shot=False))
                previous = next_state
                continue
            image = job.image
            anchor = image if job.new_shot else previous.anchor
            if self.config.color_match and not job.new_shot:
                image = match_colors(image, anchor)
            next_state = TemporalState(
                source=job.frame, image=image, latents=job.latents, noise=job.noise,
                anchor=anchor, stylized_source=job.frame,
            )  # fmt: skip
            results.append(FrameResult(image=image, state=next_state, new_shot=job.new_shot))
            previous = next_state
        return results

    def prepare_frame(self, frame: np.ndarray, frame_index: int, state: TemporalState) -> "FrameJob":
        """What one frame needs before the model runs: its shot, values, flow, generator and starting image."""
        config = self.config
        values = self.timeline.at(frame_index)
        # 1. A hard cut starts a new shot: nothing carries over it
        if state.source is not None and self.find_cuts and is_cut(state.source, frame, config.cut_threshold):
            state = TemporalState()
        new_shot = state.source is None
        if (
            not new_shot
            and config.skip_similar > 0
            and state.stylized_source is not None
            and frame_change(frame, state.stylized_source) < config.skip_similar
        ):
            return FrameJob(frame, frame_index, values, state, new_shot, skip=True)
        flow = trusted = None
        if not new_shot and (values.flow_blend > 0 or values.fusion > 0 or config.noise == "warped"):
            flow, trusted = backward_flow(state.source, frame)
        # 2. The starting image: the frame, or the frame with the previous output warped onto it
        start = frame
        if flow is not None and values.flow_blend > 0 and state.image is not None:  # None: a chunk's carried noise
            start = flow_blend(frame, warp(state.image, flow), trusted, values.flow_blend)
        job = FrameJob(frame, frame_index, values, state, new_shot, start=start, flow=flow, trusted=trusted)
        job.do_cfg = self.conditioner.uses_cfg(values.guidance)
        # a fresh CPU generator per frame: the same seed gives the same noise on any device
        job.generator = torch.Generator("cpu").manual_seed(noise_seed(values.seed, frame_index, config.noise))
        return job

    def prepare_latents(self, jobs: list["FrameJob"], timesteps: torch.Tensor) -> torch.Tensor:
        """Encode the frames, blend in the previous latents, and noise them to the first timestep."""
        first, values = jobs[0], jobs[0].values
        latents = self.latents.encode([job.start for job in jobs], [job.generator for job in jobs])
        if first.state.latents is not None and values.blend > 0:
            latents = blend_latents(first.state.latents, latents, values.blend)
        # drawn after the VAE's sample from the same generator, as diffusers does; warped noise
        # follows the frames in order
        noises, chain = [], first.state
        for job, frame_latents in zip(jobs, latents.split(1)):
            if job.new_shot:
                chain = TemporalState()
            job.noise = prepare_noise(
                frame_latents, job.generator, job.index, job.values.seed, self.config.noise, chain.noise, job.flow,
                job.trusted,
            )  # fmt: skip
            noises.append(job.noise)
            chain = TemporalState(noise=job.noise)
        return self.scheduler.add_noise(latents, torch.cat(noises), timesteps[:1])

    def denoise(self, jobs: list["FrameJob"]) -> None:
        """Encode, noise, denoise and decode frames that share a schedule; results go into the jobs."""
        parts, first = self.parts, jobs[0]
        do_cfg, values = first.do_cfg, first.values

        # 1. The timesteps of this strength (which also resets the sampler)
        timesteps = get_timesteps(self.scheduler, self.config.steps, values.strength, parts.device)

        # 2. The starting latents
        latents = self.prepare_latents(jobs, timesteps)

        # 3. Each frame's conditioning and guidance
        conditioning = self.conditioner.prepare(
            [job.frame for job in jobs], [job.values for job in jobs], do_cfg, values.control_scales
        )
        if self.conditioner.style is not None:
            set_style_scale(parts.unet, values.style_scale)
        guidance = torch.tensor([job.values.guidance for job in jobs], device=parts.device, dtype=latents.dtype)
        guidance = guidance.view(-1, 1, 1, 1)
        timestep_cond = None
        if self.conditioner.time_cond_dim is not None:
            timestep_cond = torch.cat([self.conditioner.guidance_embedding(job.values.guidance) for job in jobs])

        # 4. The techniques that act inside the loop
        hooks = []
        if self.memory is not None:
            hooks.append(CrossFrameHook(self.memory, len(jobs), first.new_shot))
        fusion = self.fusion_hook(jobs, latents, len(timesteps))
        if fusion is not None:
            hooks.append(fusion)

        # 5. Denoise
        generators = [job.generator for job in jobs]
        latents = self.denoiser(
            latents, timesteps, conditioning, guidance, do_cfg, timestep_cond, step_kwargs(self.scheduler, generators),
            hooks,
        )  # fmt: skip

        # 6. Decode
        images = self.latents.decode(latents, first.index)
        for index, (job, image) in enumerate(zip(jobs, images)):
            job.latents = latents[index : index + 1]
            job.image = image

    def fusion_hook(self, jobs: list["FrameJob"], latents: torch.Tensor, steps: int) -> FusionHook | None:
        """Latent fusion for the frames that fuse (their previous output warped onto them); None if none does."""
        if all(job.values.fusion == 0 for job in jobs):
            return None
        height, width = latents.shape[-2:]
        targets, weights = [], []
        for job, frame_latents in zip(jobs, latents.split(1)):
            if job.values.fusion > 0 and job.flow is not None and job.state.latents is not None:
                target, weight = fusion_target(job.state.latents, job.flow, job.trusted, job.values.fusion)
            else:
                target, weight = frame_latents.float(), torch.zeros(1, 1, height, width)
            targets.append(target)
            weights.append(weight)
        if not any(weight.any() for weight in weights):
            return None
        targets, weights = torch.cat(targets), torch.cat(weights).to(latents.device)
        return FusionHook(self.scheduler, targets, weights, steps, self.config.fusion_end)

    @torch.no_grad()
    def carried_noise(self, frames: Iterable[np.ndarray], first: int) -> TemporalState:
        """The state a run of a shot leaves after `frames` (the shot's, from its first frame `first`) as far
        as its warped noise goes: the last source and its noise, drawn for the first frame, then carried
        along the flow. No diffusion, so a chunk of a long shot can start from the noise a whole-shot run
        reaches (no skipped frames: skip_similar 0); what needs outputs (blends, fusion) starts afresh."""
        noise = source = None
        for index, frame in enumerate(frames, start=first):
            seed = self.timeline.at(index).seed
            generator = torch.Generator("cpu").manual_seed(noise_seed(seed, index, "warped"))
            if noise is None:
                # the frame's generator draws its VAE sample first, as prepare_latents does
                latents = self.latents.encode([frame], [generator])
                noise = prepare_noise(latents, generator, index, seed, "warped", None, None, None)
            else:
                flow, trusted = backward_flow(source, frame)
                noise = prepare_noise(noise, generator, index, seed, "warped", noise, flow, trusted)
            source = frame
        return TemporalState(source=source, noise=noise)

    def export_state(self, state: TemporalState, with_memory: bool = True) -> dict:
        """`state` (and the cross-frame attention memory) as plain tensors, for the work folder."""
        return export_state(state, self.memory if with_memory else None)

    def import_state(self, data: dict) -> TemporalState:
        """The inverse of export_state: the state, on this processor's device, memory restored."""
        return import_state(data, self.parts.device, self.memory)

    def close(self) -> None:
        """Give the UNet back its own attention processors."""
        if self._old_processors is not None:
            self.parts.unet.set_attn_processor(self._old_processors)
            self._old_processors = None

    def __enter__(self) -> "Img2ImgProcessor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class FrameJob:
    """One frame on its way through process(): what prepare_frame decided, then what the model made."""

    frame: np.ndarray
    index: int
    values: FrameValues
    state: TemporalState  # the state before this frame (empty after a cut)
    new_shot: bool
    skip: bool = False
    start: np.ndarray | None = None  # what is encoded: the frame, or it with the previous output flow-blended in
    flow: np.ndarray | None = None
    trusted: np.ndarray | None = None
    do_cfg: bool = False
    generator: torch.Generator | None = None
    noise: torch.Tensor | None = None
    latents: torch.Tensor | None = None
    image: np.ndarray | None = None


def _runs(items: list, key, starts=lambda item: False) -> list[list]:
    """Consecutive items with equal keys, in order; an item for which `starts` is true begins a new run."""
    runs: list[list] = []
    for item in items:
        if runs and key(runs[-1][-1]) == key(item) and not starts(item):
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs
