"""Pixels to latents and back through the VAE: scaling, the VAE's own dtype, and the fp32 fallback."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..errors import VidiffError
from ..models.parts import ModelParts

log = logging.getLogger("vidiff")


def to_tensor(frame: np.ndarray, parts: ModelParts) -> torch.Tensor:
    """An RGB uint8 frame as the VAE's input: (1, 3, H, W) in [-1, 1], in the VAE's dtype."""
    image = torch.from_numpy(np.ascontiguousarray(frame)).to(torch.float32).div(255.0).permute(2, 0, 1).unsqueeze(0)
    # through the model's dtype first, as diffusers does before an fp32 VAE (SDXL's) takes it
    image = (image * 2.0 - 1.0).to(device=parts.device, dtype=parts.dtype)
    return image.to(parts.vae.dtype)


def to_image(decoded: torch.Tensor) -> np.ndarray:
    """The first image of a decoded batch as RGB uint8."""
    image = (decoded / 2 + 0.5).clamp(0, 1)
    image = image.cpu().permute(0, 2, 3, 1).float().numpy()[0]
    return (image * 255).round().astype(np.uint8)


class LatentCodec:
    """The model's VAE (compiled once when asked) with the latent scaling its config asks for."""

    def __init__(self, parts: ModelParts, compile: bool = False):
        self.parts = parts
        self.encode_fn, self.decode_fn = parts.vae.encode, parts.vae.decode
        if compile:
            self.encode_fn, self.decode_fn = torch.compile(parts.vae.encode), torch.compile(parts.vae.decode)

    def _stats(self, latents: torch.Tensor):
        """A VAE's per-channel latent mean and spread, for the few that normalise with them (else None)."""
        config = self.parts.vae.config
        if getattr(config, "latents_mean", None) is None or getattr(config, "latents_std", None) is None:
            return None
        return tuple(torch.tensor(v).view(1, -1, 1, 1).to(latents.device, latents.dtype) for v in (config.latents_mean, config.latents_std))

    def scale(self, sample: torch.Tensor) -> torch.Tensor:
        """The VAE's sample in the UNet's latent space."""
        scaling, stats = self.parts.vae.config.scaling_factor, self._stats(sample)
        return sample * scaling if stats is None else (sample - stats[0]) * scaling / stats[1]

    def unscale(self, latents: torch.Tensor) -> torch.Tensor:
        scaling, stats = self.parts.vae.config.scaling_factor, self._stats(latents)
        return latents / scaling if stats is None else latents * stats[1] / scaling + stats[0]

    def encode(self, frames: list[np.ndarray], generators: list[torch.Generator]) -> torch.Tensor:
        """Frames to scaled latents in the model's dtype, each frame's VAE sample drawn from its own generator."""
        encoded = self.encode_fn(torch.cat([to_tensor(frame, self.parts) for frame in frames]))
        if hasattr(encoded, "latent_dist"):
            sample = encoded.latent_dist.sample(generators)
        else:  # a VAE without a distribution (AutoencoderTiny) returns its latents as they are
            sample = encoded.latents
        return self.scale(sample.to(self.parts.dtype))  # a cast only for an fp32 VAE (SDXL's, or after a NaN)

    def decode(self, latents: torch.Tensor, frame_index: int) -> list[np.ndarray]:
        """Latents to RGB uint8 frames; a half-precision VAE that overflows to NaN/inf is upcast to fp32 and tried again."""
        vae = self.parts.vae
        decoded = self.decode_fn(self.unscale(latents.to(vae.dtype)), return_dict=False)[0]
        if not torch.isfinite(decoded).all():
            decoded = self._decode_fp32(latents, frame_index)
        return [to_image(decoded[index : index + 1]) for index in range(decoded.shape[0])]

    def _decode_fp32(self, latents: torch.Tensor, frame_index: int) -> torch.Tensor:
        vae = self.parts.vae
        if vae.dtype != torch.float32:
            log.warning(
                f"frame {frame_index}: the {str(vae.dtype).removeprefix('torch.')} VAE overflowed (NaN/inf); "
                "decoding in fp32 from here on"
            )
            # for the rest of the run, as diffusers' upcast_vae does: SD's VAE overflows in fp16 at large sizes
            vae.to(torch.float32)
            decoded = vae.decode(self.unscale(latents.to(torch.float32)), return_dict=False)[0]
            if torch.isfinite(decoded).all():
                return decoded
        raise VidiffError(
            f"frame {frame_index}: the model produced NaN/inf values; try --dtype fp32, or a lower --guidance"
        )
