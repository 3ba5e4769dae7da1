"""Whether a part given to a model fits it: its shapes compared with the model's when it loads.

diffusers loads a ControlNet, VAE or embedding of any shape; one that doesn't fit fails only at the
first frame, as a tensor-size error deep in a forward pass, after everything has loaded. Each check
here returns None when the part fits, else the first difference in words ("its text width is 1024,
the model's 768"); the loader turns it into one line naming both parts, before any frame is processed.
"""

from __future__ import annotations

from .parts import KIND_NAMES, ModelParts


def latent_scale(vae) -> int:
    """How many pixels one latent pixel stands for: the encoder halves the size between its blocks.
    (AutoencoderTiny registers its decoder's block_out_channels under this name too.)"""
    return 2 ** (len(vae.config.block_out_channels) - 1)


def controlnet_misfit(net, parts: ModelParts) -> str | None:
    """What keeps a ControlNetModel from running beside the model's UNet and VAE, if anything."""
    net_config, unet = net.config, parts.unet.config
    net_sdxl = net_config.addition_embed_type == "text_time"
    if net_sdxl != (parts.kind == "sdxl"):
        return f"it is a ControlNet for {'SDXL' if net_sdxl else 'SD 1.x/2.x'}, the model is {KIND_NAMES[parts.kind]}"
    if net_config.cross_attention_dim != unet.cross_attention_dim:
        return f"its text width is {net_config.cross_attention_dim}, the model's {unet.cross_attention_dim}"
    if net_config.in_channels != unet.in_channels:
        return f"it takes {net_config.in_channels} latent channels, the model's UNet {unet.in_channels}"
    # its residuals are added to the UNet's down blocks, one per layer, at each block's width
    net_blocks, unet_blocks = _blocks_of(net_config), _blocks_of(unet)
    if net_blocks != unet_blocks:
        return f"its blocks are {_blocks(*net_blocks)}, the model's UNet's {_blocks(*unet_blocks)}"
    # the control image is embedded at the latents' size: its embedding must shrink it as the VAE does
    embedding = 2 ** (len(net_config.conditioning_embedding_out_channels) - 1)
    vae = latent_scale(parts.vae)
    if embedding != vae:
        return f"its control-image embedding downsamples {embedding}×, the model's VAE {vae}×"
    return None


def _blocks_of(config) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Each down block's width and layer count (a config gives the count once for all, or per block)."""
    channels = tuple(config.block_out_channels)
    layers = config.layers_per_block
    return channels, tuple(layers) if isinstance(layers, (list, tuple)) else (layers,) * len(channels)


def _blocks(channels: tuple[int, ...], layers: tuple[int, ...]) -> str:
    if len(set(layers)) == 1:
        return f"{'/'.join(map(str, channels))} channels with {layers[0]} layer(s) each"
    return f"{'/'.join(map(str, channels))} channels with {'/'.join(map(str, layers))} layers"


def vae_misfit(vae, parts: ModelParts) -> str | None:
    """What keeps another VAE from standing in for the model's own, if anything."""
    channels, wanted = vae.config.latent_channels, parts.unet.config.in_channels
    if channels != wanted:
        return f"it has {channels} latent channels, the model's UNet takes {wanted}"
    scale, model_scale = latent_scale(vae), latent_scale(parts.vae)
    if scale != model_scale:
        return f"it downsamples {scale}×, the model's VAE {model_scale}×"
    return None


def embedding_misfit(vectors, text_encoder, name: str = "text encoder") -> str | None:
    """What keeps textual-inversion vectors (one, or a vectors × width tensor) from entering a text encoder."""
    width = vectors.shape[-1]
    wanted = text_encoder.get_input_embeddings().weight.shape[1]
    if width != wanted:
        return f"its vectors are {width} wide, the model's {name} takes {wanted}"
    return None


def motion_adapter_misfit(adapter, parts: ModelParts) -> str | None:
    """What keeps a diffusers MotionAdapter from joining the model's UNet, if anything: its motion
    modules follow each UNet block at that block's width, one after each of the block's layers."""
    adapter_channels = tuple(adapter.config.block_out_channels)
    unet_channels = tuple(parts.unet.config.block_out_channels)
    if adapter_channels != unet_channels:
        return (f"its motion modules are {'/'.join(map(str, adapter_channels))} channels wide, "
                f"the model's UNet blocks {'/'.join(map(str, unet_channels))}")  # fmt: skip
    layers, unet_layers = adapter.config.motion_layers_per_block, parts.unet.config.layers_per_block
    if layers != unet_layers:
        return f"it has {layers} motion layer(s) per block, the model's UNet {unet_layers} layer(s) per block"
    return None
