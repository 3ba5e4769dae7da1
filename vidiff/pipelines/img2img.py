"""Stylise frames with Stable Diffusion img2img: prepare once per video, then a plain per-frame step.

With noise = "fixed" and blend = 0 each frame is computed exactly as diffusers'
StableDiffusionImg2ImgPipeline computes it with `generator=torch.Generator("cpu").manual_seed(seed)`:
the same generator draws the VAE's latent sample, then the noise, then any sampler noise. SDXL
models follow StableDiffusionXLImg2ImgPipeline, and ControlNets StableDiffusion(XL)ControlNetImg2ImgPipeline.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, replace

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..errors import VidiffError
from ..models.parts import ModelParts
from ..settings.config import Config, values_of
from ..settings.keyframes import FrameValues, Timeline
from ..temporal.attention import CrossFrameMemory, install_cross_frame_attention
from ..temporal.blending import blend_latents, flow_blend, warp_latents
from ..temporal.change import frame_change, is_cut
from ..temporal.color import match_colors
from ..temporal.flow import backward_flow, downscale_flow, warp
from ..temporal.noise import noise_seed, warp_noise
from .control_images import control_image
from .prompts import PromptEncoder, TextEmbedding, combine
from .samplers import make_scheduler, noise_level, output_for, predicted_original

log = logging.getLogger("vidiff")


@dataclass
class FrameResult:
    image: np.ndarray  # RGB uint8, (height, width, 3)
    state: "TemporalState"  # what the next frame needs
    new_shot: bool  # whether this frame began a shot (the first frame, or after a cut)


@dataclass
class TemporalState:
    """What the next frame needs from the frames before it; empty at the start of each shot."""

    source: np.ndarray | None = None  # the previous source frame: flow and cuts are measured on sources
    image: np.ndarray | None = None  # the previous stylised frame
    latents: torch.Tensor | None = None  # the previous frame's final denoised latents
    noise: torch.Tensor | None = None  # the previous frame's starting noise
    noise_offset: torch.Tensor | None = None  # warped noise: each sample's sub-pixel lag, (H, W, 2)
    anchor: np.ndarray | None = None  # the shot's first stylised frame: the colour reference
    stylised_source: np.ndarray | None = None  # the source of the last frame stylised (not skipped)


@dataclass
class FrameConditioning:
    """What a frame's denoising steps are conditioned on; the same at every step."""

    prompt_embeds: torch.Tensor  # the text's hidden states, batched as the UNet's input (CFG: negative first)
    added: dict | None  # SDXL's added_cond_kwargs (pooled text, size and crop); None for SD 1.x/2.x
    control_images: list  # one per ControlNet, batched as the UNet's input
    control_scales: tuple = ()  # each ControlNet's conditioning scale for this frame


class Stylizer:
    """Holds what is the same for every frame of a video: prompt embeddings, sampler, guidance.

    Use it as a context manager (or call close()) when cross-frame attention is on: it installs
    attention processors on the UNet it was given and puts the old ones back on close.
    """

    def __init__(self, parts: ModelParts, config: Config, fps: float | None = None):
        """`fps` places keyframes given in seconds; it is needed only when the config has them."""
        self.parts, self.config = parts, config
        self.timeline = Timeline(config, fps)
        self.scheduler = make_scheduler(config.scheduler, parts.scheduler_config)
        self.time_cond_dim = parts.unet.config.time_cond_proj_dim
        self.encoder = PromptEncoder(parts)  # each text is encoded once per video, then mixed per frame
        if len(parts.controlnets) != len(config.controlnet):
            raise VidiffError(
                f"the settings name {len(config.controlnet)} ControlNets but the model parts hold "
                f"{len(parts.controlnets)}; load them with load_parts(..., controlnet=config.controlnet)"
            )
        # each ControlNet with the preprocessor that makes its control image (its scale may vary per frame)
        self.controls = [
            (net, config.control[index if len(config.control) > 1 else 0]) for index, net in enumerate(parts.controlnets)
        ]
        # frames that don't depend on the previous output can go through the model together
        self.batchable = not any(
            value > 0
            for name in ("blend", "flow_blend", "fusion")
            for value in values_of(name, getattr(config, name))
        )
        self.unet, self.vae_encode, self.vae_decode = parts.unet, parts.vae.encode, parts.vae.decode
        if config.compile:
            # compiled once per Stylizer; frames keep their shape, so a run recompiles only for a last,
            # smaller batch (or when keyframed guidance switches CFG on or off)
            self.unet = torch.compile(parts.unet)
            self.vae_encode, self.vae_decode = torch.compile(parts.vae.encode), torch.compile(parts.vae.decode)
        step_params = set(inspect.signature(self.scheduler.step).parameters)
        self._step_takes_eta = "eta" in step_params
        self._step_takes_generator = "generator" in step_params
        self.memory, self._old_processors = None, None
        if config.cross_frame_attn:
            self.memory = CrossFrameMemory()
            self._old_processors = install_cross_frame_attention(parts.unet, self.memory)

    # 1. The frame's conditioning: its texts' embeddings (each encoded once per video), mixed
    def _embedding(self, terms: tuple[tuple[str, float], ...], negative: bool = False) -> TextEmbedding:
        encode = self.encoder.negative if negative else self.encoder
        return combine([(encode(text), weight) for text, weight in terms])

    def _conditioning(self, values: FrameValues, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The hidden states and (SDXL) pooled embeddings, batched as the UNet's input."""
        prompt = self._embedding(values.prompt)
        if not do_cfg:
            return prompt.hidden, prompt.pooled
        # unconditional first, as diffusers orders the CFG batch
        negative = self._embedding(values.negative_prompt, negative=True)
        pooled = None if prompt.pooled is None else torch.cat([negative.pooled, prompt.pooled])
        return torch.cat([negative.hidden, prompt.hidden]), pooled

    def _guidance_embedding(self, guidance: float) -> torch.Tensor:
        """The guidance scale as a sinusoidal embedding (LCM's w-conditioning), as diffusers computes it."""
        dim = self.time_cond_dim
        w = torch.tensor([guidance - 1.0]) * 1000.0
        half = dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
        emb = w.to(torch.float32)[:, None] * freqs[None, :]
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
        if dim % 2 == 1:
            emb = torch.nn.functional.pad(emb, (0, 1))
        return emb.to(device=self.parts.device, dtype=self.parts.dtype)

    # 2. The timesteps of a strength-limited run; setting them also resets the sampler's state
    def _reset_timesteps(self, strength: float) -> torch.Tensor:
        steps, scheduler = self.config.steps, self.scheduler
        scheduler.set_timesteps(steps, device=self.parts.device)
        t_start = steps - min(int(steps * strength), steps)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(t_start * scheduler.order)
        return scheduler.timesteps[t_start * scheduler.order :]

    def _to_tensor(self, frame: np.ndarray) -> torch.Tensor:
        image = torch.from_numpy(np.ascontiguousarray(frame)).to(torch.float32).div(255.0).permute(2, 0, 1).unsqueeze(0)
        # through the model's dtype first, as diffusers does before an fp32 VAE (SDXL's) takes it
        image = (image * 2.0 - 1.0).to(device=self.parts.device, dtype=self.parts.dtype)
        return image.to(self.parts.vae.dtype)

    def _latent_stats(self, latents: torch.Tensor):
        """A VAE's per-channel latent mean and spread, for the few that normalise with them (else None)."""
        config = self.parts.vae.config
        if getattr(config, "latents_mean", None) is None or getattr(config, "latents_std", None) is None:
            return None
        return tuple(torch.tensor(v).view(1, -1, 1, 1).to(latents.device, latents.dtype) for v in (config.latents_mean, config.latents_std))

    def _scale_latents(self, sample: torch.Tensor) -> torch.Tensor:
        """The VAE's sample in the UNet's latent space."""
        scaling, stats = self.parts.vae.config.scaling_factor, self._latent_stats(sample)
        return sample * scaling if stats is None else (sample - stats[0]) * scaling / stats[1]

    def _unscale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        scaling, stats = self.parts.vae.config.scaling_factor, self._latent_stats(latents)
        return latents / scaling if stats is None else latents * stats[1] / scaling + stats[0]

    @staticmethod
    def _to_image(decoded: torch.Tensor) -> np.ndarray:
        image = (decoded / 2 + 0.5).clamp(0, 1)
        image = image.cpu().permute(0, 2, 3, 1).float().numpy()[0]
        return (image * 255).round().astype(np.uint8)

    def _decode(self, latents: torch.Tensor, frame_index: int) -> torch.Tensor:
        """Decode latents; a half-precision VAE that overflows to NaN/inf is upcast to fp32 and tried again."""
        vae = self.parts.vae
        decoded = self.vae_decode(self._unscale_latents(latents.to(vae.dtype)), return_dict=False)[0]
        if torch.isfinite(decoded).all():
            return decoded
        if vae.dtype != torch.float32:
            log.warning(
                f"frame {frame_index}: the {str(vae.dtype).removeprefix('torch.')} VAE overflowed (NaN/inf); "
                "decoding in fp32 from here on"
            )
            # for the rest of the run, as diffusers' upcast_vae does: SD's VAE overflows in fp16 at large sizes
            vae.to(torch.float32)
            decoded = vae.decode(self._unscale_latents(latents.to(torch.float32)), return_dict=False)[0]
            if torch.isfinite(decoded).all():
                return decoded
        raise VidiffError(
            f"frame {frame_index}: the model produced NaN/inf values; try --dtype fp32, or a lower --guidance"
        )

    def _noise(self, latents, generator, frame_index, seed, state: TemporalState, flow, trusted):
        """The frame's starting noise (and, warped, its sub-pixel offsets); drawn after the VAE's sample
        from the same generator, as diffusers does."""
        device, dtype = self.parts.device, latents.dtype
        if self.config.noise == "warped" and state.noise is not None and flow is not None:
            height, width = latents.shape[-2:]
            small_flow, small_trusted = downscale_flow(flow, trusted, (width, height))
            fresh_generator = torch.Generator("cpu").manual_seed(seed + frame_index)
            fresh = randn_tensor(latents.shape, generator=fresh_generator, device=device, dtype=dtype)
            return warp_noise(
                state.noise, torch.from_numpy(small_flow), torch.from_numpy(small_trusted), fresh, state.noise_offset
            )
        return randn_tensor(latents.shape, generator=generator, device=device, dtype=dtype), None

    def _frame_conditioning(
        self,
        frames: list[np.ndarray],
        prompt_embeds: torch.Tensor,
        pooled_embeds: torch.Tensor | None,
        do_cfg: bool,
        control_scales: tuple = (),
    ) -> FrameConditioning:
        """The frames' text embeddings with what the UNet takes besides: SDXL's pooled text and its size
        and crop numbers, and each ControlNet's control images, made from the source frames."""
        device, dtype = self.parts.device, prompt_embeds.dtype
        added = None
        if pooled_embeds is not None:
            height, width = frames[0].shape[:2]
            # original size, crop top-left, target size: the frame as it is, uncropped
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype)
            time_ids = torch.cat([time_ids] * pooled_embeds.shape[0]).to(device)
            added = {"text_embeds": pooled_embeds.to(device), "time_ids": time_ids}
        images = []
        for net, kind in self.controls:
            controls = [control_image(kind, frame, self.config.canny_low, self.config.canny_high) for frame in frames]
            tensor = torch.from_numpy(np.stack(controls)).to(torch.float32).div(255.0).permute(0, 3, 1, 2)
            tensor = tensor.to(device=device, dtype=net.dtype)
            # the unconditional and conditional halves of the CFG batch see the same control image
            images.append(torch.cat([tensor] * 2) if do_cfg else tensor)
        return FrameConditioning(prompt_embeds, added, images, control_scales)

    def _unet_extras(self, conditioning: FrameConditioning, model_input: torch.Tensor, t) -> dict:
        """The UNet's keyword arguments beyond the text: SDXL's added conditioning, and the ControlNets'
        residuals summed over the nets (as diffusers' MultiControlNetModel sums them)."""
        extras = {}
        if conditioning.added is not None:
            extras["added_cond_kwargs"] = conditioning.added
        down = mid = None
        for (net, _kind), image, scale in zip(self.controls, conditioning.control_images, conditioning.control_scales):
            net_down, net_mid = net(
                model_input, t, encoder_hidden_states=conditioning.prompt_embeds, controlnet_cond=image,
                conditioning_scale=scale, guess_mode=False, added_cond_kwargs=conditioning.added, return_dict=False,
            )  # fmt: skip
            down = net_down if down is None else [a + b for a, b in zip(down, net_down)]
            mid = net_mid if mid is None else mid + net_mid
        if down is not None:
            extras["down_block_additional_residuals"] = down
            extras["mid_block_additional_residual"] = mid
        return extras

    def __call__(self, frame: np.ndarray, frame_index: int, state: TemporalState | None = None) -> FrameResult:
        """Stylise one RGB uint8 frame, given what the previous frames left in `state`."""
        return self.batch([frame], frame_index, state)[0]

    @torch.no_grad()
    def batch(self, frames: list[np.ndarray], first_index: int, state: TemporalState | None = None) -> list[FrameResult]:
        """Stylise consecutive frames (indices first_index, first_index + 1, ...) through the VAE and
        UNet together; each comes out as it would alone. More than one frame needs `self.batchable`."""
        if len(frames) > 1 and not self.batchable:
            raise ValueError("these settings make each frame depend on the previous output: stylise one at a time")
        state = state or TemporalState()

        # 1. Per frame, in order: cuts, skips, the frame's settings, its generator and starting image
        plans, previous = [], state
        for offset, frame in enumerate(frames):
            plan = self._plan(frame, first_index + offset, previous)
            plans.append(plan)
            # all a later frame of the batch reads: sources, for cuts, flow and skips
            previous = TemporalState(source=frame, stylised_source=plan.state.stylised_source if plan.skip else frame)
        work = [plan for plan in plans if not plan.skip]

        # 2. The model work, in runs of frames that share a sampler schedule and a CFG batch shape
        # (a cut starts a new run where cross-frame attention must start its memory afresh)
        for group in _runs(
            work,
            key=lambda plan: (plan.values.strength, plan.do_cfg, plan.values.control_scales),
            starts=lambda plan: self.memory is not None and plan.new_shot,
        ):
            self._denoise(group)

        # 3. In order again: colours held to the shot's first frame, skipped frames, the state chain
        results, previous = [], state
        for plan in plans:
            if plan.skip:  # the source barely changed since the last stylised frame: reuse its output
                next_state = replace(previous, source=plan.frame)
                results.append(FrameResult(image=previous.image, state=next_state, new_shot=False))
                previous = next_state
                continue
            image = plan.image
            anchor = image if plan.new_shot else previous.anchor
            if self.config.color_match and not plan.new_shot:
                image = match_colors(image, anchor)
            next_state = TemporalState(
                source=plan.frame, image=image, latents=plan.latents, noise=plan.noise,
                noise_offset=plan.noise_offset, anchor=anchor, stylised_source=plan.frame,
            )  # fmt: skip
            results.append(FrameResult(image=image, state=next_state, new_shot=plan.new_shot))
            previous = next_state
        return results

    def _plan(self, frame: np.ndarray, frame_index: int, state: TemporalState) -> "_FramePlan":
        config = self.config
        values = self.timeline.at(frame_index)
        # 1. A hard cut starts a new shot: nothing carries over it
        if state.source is not None and config.cuts and is_cut(state.source, frame, config.cut_threshold):
            state = TemporalState()
        new_shot = state.source is None
        if (
            not new_shot
            and config.skip_similar > 0
            and state.stylised_source is not None
            and frame_change(frame, state.stylised_source) < config.skip_similar
        ):
            return _FramePlan(frame, frame_index, values, state, new_shot, skip=True)
        flow = trusted = None
        if not new_shot and (values.flow_blend > 0 or values.fusion > 0 or config.noise == "warped"):
            flow, trusted = backward_flow(state.source, frame)
        # 2. The starting image: the frame, or the frame with the previous output warped onto it
        start = frame
        if flow is not None and values.flow_blend > 0:
            start = flow_blend(frame, warp(state.image, flow), trusted, values.flow_blend)
        plan = _FramePlan(frame, frame_index, values, state, new_shot, start=start, flow=flow, trusted=trusted)
        # an LCM-distilled UNet takes the guidance as an embedding instead of running CFG
        plan.do_cfg = values.guidance > 1 and self.time_cond_dim is None
        # a fresh CPU generator per frame: the same seed gives the same noise on any device
        plan.generator = torch.Generator("cpu").manual_seed(noise_seed(values.seed, frame_index, config.noise))
        return plan

    def _denoise(self, plans: list["_FramePlan"]) -> None:
        """Encode, noise, denoise and decode frames that share a schedule; results go into the plans."""
        parts = self.parts
        first = plans[0]
        do_cfg, values = first.do_cfg, first.values
        timesteps = self._reset_timesteps(values.strength)
        generators = [plan.generator for plan in plans]

        # 3. Encode (each frame's VAE sample drawn from its own generator), then blend in the previous latents
        encoded = self.vae_encode(torch.cat([self._to_tensor(plan.start) for plan in plans]))
        if hasattr(encoded, "latent_dist"):
            sample = encoded.latent_dist.sample(generators)
        else:  # a VAE without a distribution (AutoencoderTiny) returns its latents as they are
            sample = encoded.latents
        latents = self._scale_latents(sample.to(parts.dtype))  # a cast only for an fp32 VAE (SDXL's, or after a NaN)
        if first.state.latents is not None and values.blend > 0:
            latents = blend_latents(first.state.latents, latents, values.blend)

        # 4. Noise to the strength's starting timestep; warped noise follows the frames in order
        noises, chain = [], first.state
        for plan, frame_latents in zip(plans, latents.split(1)):
            if plan.new_shot:
                chain = TemporalState()
            plan.noise, plan.noise_offset = self._noise(
                frame_latents, plan.generator, plan.index, plan.values.seed, chain, plan.flow, plan.trusted
            )
            noises.append(plan.noise)
            chain = TemporalState(noise=plan.noise, noise_offset=plan.noise_offset)
        latents = self.scheduler.add_noise(latents, torch.cat(noises), timesteps[:1])

        # 5. Denoise, each frame with its own conditioning and guidance
        conditionings = [self._conditioning(plan.values, do_cfg) for plan in plans]
        hidden, pooled = _cfg_batch(conditionings, do_cfg)
        guidance = torch.tensor([plan.values.guidance for plan in plans], device=parts.device, dtype=latents.dtype)
        guidance = guidance.view(-1, 1, 1, 1)
        timestep_cond = None
        if self.time_cond_dim is not None:
            timestep_cond = torch.cat([self._guidance_embedding(plan.values.guidance) for plan in plans])
        step_kwargs = {}
        if self._step_takes_eta:
            step_kwargs["eta"] = 0.0
        if self._step_takes_generator:
            step_kwargs["generator"] = generators
        if self.memory is not None:
            self.memory.start_batch(len(plans), first.new_shot)
        conditioning = self._frame_conditioning(
            [plan.frame for plan in plans], hidden, pooled, do_cfg, values.control_scales
        )
        fusion = self._fusion_targets(plans, latents)
        begin = getattr(self.scheduler, "begin_index", None) or 0
        for step, t in enumerate(timesteps):
            if self.memory is not None:
                self.memory.step = step
            model_input = torch.cat([latents] * 2) if do_cfg else latents
            model_input = self.scheduler.scale_model_input(model_input, t)
            noise_pred = self.unet(
                model_input,
                t,
                encoder_hidden_states=conditioning.prompt_embeds,
                timestep_cond=timestep_cond,
                return_dict=False,
                **self._unet_extras(conditioning, model_input, t),
            )[0]
            if do_cfg:
                uncond, text = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (text - uncond)
            if fusion is not None and step < self.config.fusion_end * len(timesteps):
                # the sample as the UNet saw it: variance-preserving whatever the sampler's own scale
                sample = model_input[: len(plans)]
                noise_pred = self._fuse(noise_pred, sample, t, begin + step, *fusion)
            latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
        if self.memory is not None:
            self.memory.end_batch()

        # 6. Decode
        decoded = self._decode(latents, first.index)
        for index, plan in enumerate(plans):
            plan.latents = latents[index : index + 1]
            plan.image = self._to_image(decoded[index : index + 1])

    def _fusion_targets(self, plans: list["_FramePlan"], latents: torch.Tensor):
        """Each frame's previous output latents warped onto it, and the per-pixel fusion weights
        (the frame's fusion where the flow is trusted, 0 elsewhere), in float32 as _fuse works;
        None when no frame fuses."""
        if all(plan.values.fusion == 0 for plan in plans):
            return None
        height, width = latents.shape[-2:]
        targets, weights = [], []
        for plan, frame_latents in zip(plans, latents.split(1)):
            if plan.values.fusion > 0 and plan.flow is not None and plan.state.latents is not None:
                small_flow, small_trusted = downscale_flow(plan.flow, plan.trusted, (width, height))
                targets.append(warp_latents(plan.state.latents, torch.from_numpy(small_flow)).float())
                weights.append(torch.from_numpy(small_trusted).to(torch.float32)[None, None] * plan.values.fusion)
            else:
                targets.append(frame_latents.float())
                weights.append(torch.zeros(1, 1, height, width))
        if not any(weight.any() for weight in weights):
            return None
        return torch.cat(targets), torch.cat(weights).to(latents.device)

    def _fuse(self, noise_pred, sample, t, position, targets, weights):
        """The model output with its estimate of the clean frames pulled towards the fusion targets."""
        alpha, sigma = noise_level(self.scheduler, t, position)
        kind = self.scheduler.config.prediction_type
        # in float32: at the first steps σ is large and x0 = (x − σ·ε)/α amplifies fp16 rounding
        output, sample = noise_pred.float(), sample.float()
        estimate = predicted_original(output, sample, alpha, sigma, kind)
        fused = blend_latents(targets, estimate, weights)
        return output_for(fused, sample, alpha, sigma, kind).to(noise_pred.dtype)

    def export_state(self, state: TemporalState, with_memory: bool = True) -> dict:
        """`state` (and the cross-frame attention memory) as plain tensors, for the work folder."""
        data = {}
        for name, value in vars(state).items():
            if value is not None:
                data[name] = torch.from_numpy(value) if isinstance(value, np.ndarray) else value.cpu()
        if with_memory and self.memory is not None:
            memory = self.memory
            # right after a shot's first frame the anchor *is* the previous frame: attended to once
            parts = ("anchor",) if memory.previous is memory.anchor else ("anchor", "previous")
            data["memory"] = {
                part: {f"{layer}|{step}": tensor.cpu() for (layer, step), tensor in getattr(memory, part).items()}
                for part in parts
            }
        return data

    def import_state(self, data: dict) -> TemporalState:
        """The inverse of export_state: the state, on this stylizer's device, memory restored."""
        device = self.parts.device
        state = TemporalState(
            source=data["source"].numpy() if "source" in data else None,
            image=data["image"].numpy() if "image" in data else None,
            latents=data["latents"].to(device) if "latents" in data else None,
            noise=data["noise"].to(device) if "noise" in data else None,
            noise_offset=data.get("noise_offset"),
            anchor=data["anchor"].numpy() if "anchor" in data else None,
            stylised_source=data["stylised_source"].numpy() if "stylised_source" in data else None,
        )
        if self.memory is not None:
            self.memory.reset()
            for part, stored in data.get("memory", {}).items():
                restored = {}
                for key, tensor in stored.items():
                    layer, step = key.rsplit("|", 1)
                    restored[(layer, int(step))] = tensor.to(device)
                setattr(self.memory, part, restored)
            if "previous" not in data.get("memory", {}):
                self.memory.previous = self.memory.anchor
        return state

    def close(self) -> None:
        """Give the UNet back its own attention processors."""
        if self._old_processors is not None:
            self.parts.unet.set_attn_processor(self._old_processors)
            self._old_processors = None

    def __enter__(self) -> "Stylizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class _FramePlan:
    """One frame on its way through batch(): what the pre-pass decided, then what the model made."""

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
    noise_offset: torch.Tensor | None = None
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


def _cfg_batch(conditionings: list, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-frame (hidden, pooled) pairs, each [negative, prompt] under CFG, as one batch ordered as
    torch.cat([latents] * 2) is: every frame's negative, then every frame's prompt."""
    if not do_cfg:
        hidden = torch.cat([h for h, _ in conditionings])
        pooled = None if conditionings[0][1] is None else torch.cat([p for _, p in conditionings])
        return hidden, pooled
    hidden = torch.cat([h[:1] for h, _ in conditionings] + [h[1:] for h, _ in conditionings])
    pooled = None
    if conditionings[0][1] is not None:
        pooled = torch.cat([p[:1] for _, p in conditionings] + [p[1:] for _, p in conditionings])
    return hidden, pooled
