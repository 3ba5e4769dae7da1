"""What is loaded onto a base model: LoRAs (fused in), textual-inversion embeddings, ControlNets and
another VAE.

Each goes through diffusers' own loaders, so every format diffusers reads works here (diffusers
and Kohya LoRAs, A1111 and diffusers embeddings); a file that doesn't fit the model is one error line.
"""

from __future__ import annotations

import json
import logging
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from ..errors import VidiffError
from ..settings.config import split_embedding
from ..settings.keyframes import split_weighted
from .fit import controlnet_misfit, embedding_misfit, vae_misfit
from .parts import KIND_NAMES, ModelParts, _first_line, _looks_like_path, refuse_pickle


def _pipeline(parts: ModelParts):
    """The parts in the diffusers pipeline of their kind: diffusers' LoRA and embedding loaders live there."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = DDIMScheduler.from_config(parts.scheduler_config)  # never run: the pipeline needs one
    if parts.kind == "sdxl":
        return StableDiffusionXLPipeline(
            vae=parts.vae, text_encoder=parts.text_encoder, text_encoder_2=parts.text_encoder_2,
            tokenizer=parts.tokenizer, tokenizer_2=parts.tokenizer_2, unet=parts.unet, scheduler=scheduler,
        )  # fmt: skip
    return StableDiffusionPipeline(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip


class _Caught(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _library_messages():
    """diffusers logs a failed LoRA load as an error, then raises it, and a LoRA's layers it found no
    place for only as a warning, then goes on without them: catch what it says, print nothing, so
    that vidiff's own line says it once."""
    logger = logging.getLogger("diffusers")
    saved = logger.level, logger.handlers[:], logger.propagate
    caught = _Caught()
    logger.setLevel(logging.WARNING)
    logger.handlers, logger.propagate = [caught], False
    try:
        yield caught.messages
    finally:
        logger.level, logger.handlers, logger.propagate = saved


def _state_dict(path: Path, what: str, allow_pickle: bool) -> dict:
    refuse_pickle(path, what, allow_pickle)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only: tensors and plain containers, no code (the flag was given for the file anyway)
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors and torch each raise their own kinds for a damaged file
        raise VidiffError(f"{what} {path} could not be read: {_first_line(err)}") from None


def _local_file(source: str, what: str) -> Path | None:
    """The local file `source` names; None for a folder or hub id; an error for a missing path."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if _looks_like_path(source) and not path.exists():
        raise VidiffError(f"{what} {source} not found: give a file, a folder or a hub id")
    return None


def fuse_loras(parts: ModelParts, specs: tuple[str, ...], allow_pickle: bool = False) -> None:
    """Fuse each LoRA ("PATH_OR_ID[:SCALE]") into the UNet and text encoders at its scale.

    Fused, the model runs as fast as without LoRAs and its UNet is plain again (the cross-frame
    attention processors install on it as on any UNet); the result is diffusers' fuse_lora at that scale.
    """
    if not specs:
        return
    pipe = _pipeline(parts)
    names, scales = [], []
    for index, spec in enumerate(specs):
        source, scale = split_weighted(spec)
        file = _local_file(source, "--lora")
        weights = _state_dict(file, "--lora", allow_pickle) if file is not None else source
        name = f"lora{index}"
        try:
            with _library_messages() as said:
                pipe.load_lora_weights(weights, adapter_name=name)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
            raise VidiffError(
                f"--lora {spec} does not fit the {KIND_NAMES[parts.kind]} model (--model {parts.name}): "
                f"{_lora_misfit(err, name)}; is it a LoRA for another kind of model?"
            ) from None
        left_out = [line for line in said if "unexpected keys" in line]
        if left_out:
            # "...led to unexpected keys found in the model: key, key, ..."
            keys = left_out[0].split(": ", 1)[-1].rstrip(". ").split(", ")
            raise VidiffError(
                f"--lora {spec} does not fit the {KIND_NAMES[parts.kind]} model (--model {parts.name}): {len(keys)} of its "
                f"tensors are for layers the model lacks (such as {keys[0]}); is it a LoRA for another kind of model?"
            )
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise VidiffError(
                f"--lora {spec}: none of its layers match the {KIND_NAMES[parts.kind]} model (--model {parts.name}); "
                "is it a LoRA for another kind of model?"
            )
        names.append(name)
        scales.append(scale)
    pipe.set_adapters(names, adapter_weights=scales)
    pipe.fuse_lora(adapter_names=names, lora_scale=1.0)
    pipe.unload_lora_weights()  # the fused weights stay; the LoRA layers go
    parts.lora = tuple(specs)


# torch's words for a tensor of the wrong shape in load_state_dict
_SIZE_MISMATCH = re.compile(
    r"size mismatch for ([\w.]+): copying a param with shape torch.Size\(\[([\d, ]*)\]\) from checkpoint, "
    r"the shape in current model is torch.Size\(\[([\d, ]*)\]\)"
)


def _lora_misfit(err: Exception, adapter: str) -> str:
    """The first layer whose size differs, from torch's size-mismatch report; else the error's first line."""
    sizes = _SIZE_MISMATCH.search(str(err))
    if sizes is None:
        return "its layer sizes differ from the model's" if "size mismatch" in str(err) else _first_line(err)
    layer, theirs, ours = sizes.groups()
    layer = layer.replace(f".{adapter}.", ".")  # peft's name for it, not the file's
    return f"its layer {layer} is {theirs.replace(', ', '×')}, the model's {ours.replace(', ', '×')}"


def add_embeddings(parts: ModelParts, specs: tuple[str, ...], allow_pickle: bool = False) -> None:
    """Add each textual-inversion embedding ("PATH[:TOKEN]") to the tokenizers and text encoders."""
    if not specs:
        return
    pipe = _pipeline(parts)
    for spec in specs:
        source, token = split_embedding(spec)
        path = Path(source).expanduser()
        if not path.is_file():
            raise VidiffError(f"--embedding {source} not found: give an embedding file (.safetensors, or .pt with --allow-pickle)")
        token = token or path.stem  # as A1111 does: the file's name is the word for it
        state = _state_dict(path, "--embedding", allow_pickle)
        sdxl_file = {"clip_l", "clip_g"} <= set(state)
        _check_embedding(spec, state, parts, sdxl_file)
        try:
            if parts.kind == "sdxl":
                if not sdxl_file:
                    raise VidiffError(
                        f"--embedding {spec}: an SDXL model needs an SDXL embedding (clip_l and clip_g vectors); "
                        f"this file holds {', '.join(sorted(state)) or 'nothing'}"
                    )
                pipe.load_textual_inversion(state["clip_l"], token=token, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer)
                pipe.load_textual_inversion(state["clip_g"], token=token, text_encoder=parts.text_encoder_2, tokenizer=parts.tokenizer_2)
            else:
                if sdxl_file:
                    raise VidiffError(f"--embedding {spec} is an SDXL embedding; the model is {KIND_NAMES[parts.kind]}")
                pipe.load_textual_inversion(state, token=token)
        except (ValueError, KeyError, RuntimeError) as err:
            raise VidiffError(f"--embedding {spec}: {_first_line(err)}") from None
    parts.embedding = tuple(specs)


def _check_embedding(spec: str, state: dict, parts: ModelParts, sdxl_file: bool) -> None:
    """Vectors of another width than the text encoder's would fail at the first prompt (or be refused
    by diffusers in words about tensors): say which widths differ."""
    if sdxl_file and parts.kind == "sdxl":
        pairs = [(state["clip_l"], parts.text_encoder, "first text encoder"),
                 (state["clip_g"], parts.text_encoder_2, "second text encoder")]  # fmt: skip
    elif not sdxl_file and parts.kind != "sdxl":
        # diffusers' layout is {token: vectors}, A1111's {"emb_params": ...} or {"string_to_param": {"*": ...}}
        found = state.get("string_to_param", state)
        found = found.get("emb_params", found) if isinstance(found, dict) else found
        vectors = next(iter(found.values())) if isinstance(found, dict) and len(found) == 1 else found
        pairs = [(vectors, parts.text_encoder, "text encoder")] if isinstance(vectors, torch.Tensor) else []
    else:
        pairs = []  # a file for the other family: the caller says so
    for vectors, encoder, name in pairs:
        misfit = embedding_misfit(vectors, encoder, name)
        if misfit:
            raise VidiffError(f"--embedding {spec} does not fit --model {parts.name}: {misfit}; "
                              "it is an embedding for another kind of model")  # fmt: skip


def load_controlnets(parts: ModelParts, specs: tuple[str, ...], dtype: torch.dtype, allow_pickle: bool = False) -> list:
    """One ControlNetModel per "PATH_OR_ID[:SCALE]": a diffusers folder, a hub id or a single file."""
    from diffusers import ControlNetModel

    nets = []
    for spec in specs:
        source, _scale = split_weighted(spec)
        net = _load(
            "--controlnet", source, allow_pickle,
            lambda file: ControlNetModel.from_single_file(file, torch_dtype=dtype),
            lambda where: ControlNetModel.from_pretrained(where, torch_dtype=dtype),
            "give a diffusers ControlNet folder, a hub id in the local cache, or a single file whose config is in "
            "the hub cache",
        )  # fmt: skip
        misfit = controlnet_misfit(net, parts)
        if misfit:
            raise VidiffError(
                f"--controlnet {source} is not a ControlNet for an {KIND_NAMES[parts.kind]} model like "
                f"--model {parts.name}: {misfit}"
            )
        if net.config.global_pool_conditions:
            raise VidiffError(f"--controlnet {source} pools its conditions (guess mode, e.g. shuffle): not supported")
        nets.append(net)
    return nets


def _load(option: str, source: str, allow_pickle: bool, from_file, from_folder_or_id, advice: str):
    """Load a component from a single file or from a folder or hub id; every failure is one line."""
    file = _local_file(source, option)
    try:
        if file is not None:
            refuse_pickle(file, option, allow_pickle)
            return from_file(str(file))
        path = Path(source).expanduser()
        return from_folder_or_id(str(path) if path.is_dir() else source)
    except VidiffError:
        raise
    except Exception as err:  # diffusers and the hub raise many kinds: each becomes one line
        raise VidiffError(f"{option} {source}: could not load it ({_first_line(err)}); {advice}") from None


# TAESD, the tiny autoencoder distilled from each kind's VAE (madebyollin's), for --vae tiny
TINY_VAES = {"sd1": "madebyollin/taesd", "sd2": "madebyollin/taesd", "sdxl": "madebyollin/taesdxl"}


def load_vae(parts: ModelParts, spec: str, dtype: torch.dtype, allow_pickle: bool = False) -> None:
    """Replace the model's VAE: "full" keeps it, "tiny" is TAESD for the model's kind, else a hub id, a
    diffusers folder (AutoencoderKL or AutoencoderTiny) or a single AutoencoderKL file."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    if spec == "full":
        return
    source = TINY_VAES[parts.kind] if spec == "tiny" else spec

    def from_folder_or_id(where: str):
        tiny = "taesd" in source.lower()
        config = Path(where) / "config.json"
        if config.is_file():
            tiny = json.loads(config.read_text()).get("_class_name") == "AutoencoderTiny"
        return (AutoencoderTiny if tiny else AutoencoderKL).from_pretrained(where, torch_dtype=dtype)

    vae = _load(
        "--vae", source, allow_pickle, lambda file: AutoencoderKL.from_single_file(file, torch_dtype=dtype),
        from_folder_or_id, "give 'full', 'tiny', a hub id, a diffusers VAE folder or a .safetensors file",
    )  # fmt: skip
    misfit = vae_misfit(vae, parts)
    if misfit:
        raise VidiffError(f"--vae {spec} does not fit --model {parts.name}: {misfit}; it is a VAE for another kind of model")
    parts.vae = vae
