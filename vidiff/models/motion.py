"""AnimateDiff motion modules: a diffusers MotionAdapter loaded (hub id, folder or single file) and
joined to an SD 1.x UNet, which becomes diffusers' UNetMotionModel (frames denoised together)."""

from __future__ import annotations

import torch

from ..errors import VidiffError
from .adapters import _library_messages, _local_file
from .fit import motion_adapter_misfit
from .parts import KIND_NAMES, ModelParts, _first_line, refuse_pickle


def load_motion_adapter(source: str, dtype: torch.dtype, allow_pickle: bool = False):
    """The MotionAdapter at `source`: a hub id, a diffusers folder, or a single file as model sites ship
    them (mm_sd_v15_v2.safetensors), which diffusers converts."""
    from diffusers import MotionAdapter

    file = _local_file(source, "--motion-adapter")
    try:
        with _library_messages():
            if file is not None:
                refuse_pickle(file, "--motion-adapter", allow_pickle)
                return MotionAdapter.from_single_file(str(file), torch_dtype=dtype)
            return MotionAdapter.from_pretrained(source, torch_dtype=dtype)
    except VidiffError:
        raise
    except Exception as err:  # diffusers and huggingface_hub raise many kinds: each becomes one line
        # a single file's config comes from its diffusers repository on the hub (guoyww's), as a model's does
        hint = ("; a single file takes its config from the hub cache: run once online, or give a diffusers folder"
                if file is not None else "")
        raise VidiffError(
            f"--motion-adapter {source} could not be loaded as an AnimateDiff motion adapter: {_first_line(err)}{hint}"
        ) from None


def add_motion_adapter(parts: ModelParts, source: str | None, dtype: torch.dtype, allow_pickle: bool = False) -> None:
    """Turn the parts' UNet into a motion UNet with the adapter at `source` (nothing when None)."""
    if source is None:
        return
    if parts.kind != "sd1":
        # diffusers' video-to-video AnimateDiff pipelines, which vidiff's motion windows follow, are SD 1.x only
        raise VidiffError(
            f"--motion-adapter runs on SD 1.x models; --model {parts.name} is {KIND_NAMES[parts.kind]} "
            "(SDXL motion adapters have no video-to-video pipeline in diffusers yet): give an SD 1.x model"
        )
    adapter = load_motion_adapter(source, dtype, allow_pickle)
    misfit = motion_adapter_misfit(adapter, parts)
    if misfit:
        raise VidiffError(f"--motion-adapter {source} does not fit --model {parts.name}: {misfit}")
    from diffusers import UNetMotionModel

    with _library_messages():
        parts.unet = UNetMotionModel.from_unet2d(parts.unet, adapter).to(dtype)
    parts.motion_adapter = source
