"""What the UNet is conditioned on, per window: the frames' mixed text embeddings (each text encoded
once per video), the CFG batch, SDXL's pooled text and size ids, LCM's guidance embedding, and each
ControlNet's control images and residuals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import VidiffError
from ..models.ip_adapter import encode_style_image, read_style_image
from ..models.parts import ModelParts
from ..settings.config import Config
from ..settings.keyframes import FrameValues, split_weighted
from .control_images import control_image
from .prompts import PromptEncoder, TextEmbedding, combine


@dataclass
class FrameConditioning:
    """What a window's denoising steps are conditioned on; the same at every step."""

    prompt_embeds: torch.Tensor  # the text's hidden states, batched as the UNet's input (CFG: negative first)
    added: dict | None  # SDXL's added_cond_kwargs (pooled text, size and crop); None for SD 1.x/2.x
    control_images: list  # one per ControlNet, batched as the UNet's input
    control_scales: tuple = ()  # each ControlNet's conditioning scale for this window
    image_embeds: list | None = None  # the style image's embeddings (IP-Adapter), batched as the UNet's input


class Conditioner:
    """Prepared once per video: the text encoder's cache, the ControlNets with their preprocessors."""

    def __init__(self, parts: ModelParts, config: Config):
        self.parts, self.config = parts, config
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
        # the style image, encoded once per video: (image, unconditional) embeddings
        self.style = None
        if config.style_image is not None:
            if parts.image_encoder is None:
                raise VidiffError("the settings give a style image but the model parts hold no IP-Adapter; load them "
                                  "with load_parts(..., ip_adapter=config.ip_adapter)")  # fmt: skip
            self.style = encode_style_image(parts, read_style_image(split_weighted(config.style_image)[0]))

    def style_embeds(self, count: int, do_cfg: bool) -> list | None:
        """The style image's embeddings for a UNet batch of `count` (unconditional ones first under CFG), as
        diffusers' IP-Adapter pipelines batch them; None without a style image."""
        if self.style is None:
            return None
        embeds, negative = self.style
        return [torch.cat([negative] * count + [embeds] * count) if do_cfg else torch.cat([embeds] * count)]

    def uses_cfg(self, guidance: float) -> bool:
        # an LCM-distilled UNet takes the guidance as an embedding instead of running CFG
        return guidance > 1 and self.time_cond_dim is None

    def _embedding(self, terms: tuple[tuple[str, float], ...], negative: bool = False) -> TextEmbedding:
        encode = self.encoder.negative if negative else self.encoder
        return combine([(encode(text), weight) for text, weight in terms])

    def encode_prompt(self, values: FrameValues, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A frame's hidden states and (SDXL) pooled embeddings, batched as the UNet's input."""
        prompt = self._embedding(values.prompt)
        if not do_cfg:
            return prompt.hidden, prompt.pooled
        # unconditional first, as diffusers orders the CFG batch
        negative = self._embedding(values.negative_prompt, negative=True)
        pooled = None if prompt.pooled is None else torch.cat([negative.pooled, prompt.pooled])
        return torch.cat([negative.hidden, prompt.hidden]), pooled

    def guidance_embedding(self, guidance: float) -> torch.Tensor:
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

    def prepare(
        self, frames: list[np.ndarray], values: list[FrameValues], do_cfg: bool, control_scales: tuple = ()
    ) -> FrameConditioning:
        """The window's text embeddings with what the UNet takes besides: SDXL's pooled text and its size
        and crop numbers, and each ControlNet's control images, made from the source frames."""
        hidden, pooled = cfg_batch([self.encode_prompt(frame_values, do_cfg) for frame_values in values], do_cfg)
        device, dtype = self.parts.device, hidden.dtype
        added = None
        if pooled is not None:
            height, width = frames[0].shape[:2]
            # original size, crop top-left, target size: the frame as it is, uncropped
            time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=dtype)
            time_ids = torch.cat([time_ids] * pooled.shape[0]).to(device)
            added = {"text_embeds": pooled.to(device), "time_ids": time_ids}
        images = []
        for net, kind in self.controls:
            controls = [control_image(kind, frame, self.config.canny_low, self.config.canny_high) for frame in frames]
            tensor = torch.from_numpy(np.stack(controls)).to(torch.float32).div(255.0).permute(0, 3, 1, 2)
            tensor = tensor.to(device=device, dtype=net.dtype)
            # the unconditional and conditional halves of the CFG batch see the same control image
            images.append(torch.cat([tensor] * 2) if do_cfg else tensor)
        return FrameConditioning(hidden, added, images, control_scales, self.style_embeds(len(frames), do_cfg))

    def unet_extras(self, conditioning: FrameConditioning, model_input: torch.Tensor, t) -> dict:
        """The UNet's keyword arguments beyond the text: SDXL's added conditioning, and the ControlNets'
        residuals summed over the nets (as diffusers' MultiControlNetModel sums them)."""
        extras = {}
        if conditioning.added is not None:
            extras["added_cond_kwargs"] = conditioning.added
        if conditioning.image_embeds is not None:
            extras["added_cond_kwargs"] = {**(conditioning.added or {}), "image_embeds": conditioning.image_embeds}
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


def cfg_batch(conditionings: list, do_cfg: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
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
