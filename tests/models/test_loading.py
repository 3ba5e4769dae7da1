"""Loading models: kinds (SD 1.x, 2.x, SDXL) from diffusers folders and single files, offline, and
the errors for a wrong kind, a missing config and a pickle without --allow-pickle."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from diffusers import PNDMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
from PIL import Image
from safetensors.torch import save_file

from helpers import write_tiny_lora
from ldm_layout import original_layout
from helpers import random_frames
from vidiff.models.adapters import _pipeline
from vidiff.settings.config import Config
from vidiff.errors import VidiffError
from vidiff.models.loading import checkpoint_kind, load_parts
from vidiff.models.tiny import SD15_SCHEDULER_CONFIG, tiny_parts
from vidiff.pipelines.samplers import make_scheduler
from vidiff.pipelines.img2img import Img2ImgProcessor


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Diffusers folders of the tiny models, and an SD 1.x single file in the original layout."""
    root = tmp_path_factory.mktemp("models")
    # the config folder holds other weights (seed 1) than the file (seed 0): loading must take the file's
    _pipeline(tiny_parts(seed=1)).save_pretrained(root / "sd1-config")
    _pipeline(tiny_parts(kind="sdxl")).save_pretrained(root / "sdxl")
    save_file(original_layout(tiny_parts(seed=0)), str(root / "tiny-sd1.safetensors"))
    return root


def assert_same_weights(a, b):
    theirs = b.state_dict()
    for name, weight in a.state_dict().items():
        assert torch.equal(weight, theirs[name]), name


def test_single_file_loads_offline_with_a_config_folder(tiny, folders):
    parts = load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32", model_config=str(folders / "sd1-config"))
    assert parts.kind == "sd1"
    for name in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(tiny, name), getattr(parts, name))
    config = Config(prompt="a linocut", strength=0.5, steps=4)
    frame = random_frames(1)[0]
    assert np.array_equal(Img2ImgProcessor(parts, config)(frame, 0).image, Img2ImgProcessor(tiny, config)(frame, 0).image)


def _text_encoder(encoder, **changes):
    """A text encoder of `encoder`'s class and config with `changes`, freshly (randomly) initialised."""
    config = copy.deepcopy(encoder.config)
    for name, value in changes.items():
        setattr(config, name, value)
    return type(encoder)(config)


def _unet(unet, **changes):
    """A UNet of `unet`'s config with `changes`, freshly (randomly) initialised. Without the config's private
    keys: from_config drops any value listed in its _use_default_values, overrides too."""
    config = {key: value for key, value in unet.config.items() if not key.startswith("_")}
    return UNet2DConditionModel.from_config({**config, **changes})


def tiny_of_kind(kind: str, seed: int = 0):
    """The tiny model of `kind`, with the widths that tell the kinds (and the encoders) apart, as in the real
    models: SD 2.x cross-attends to a 1024-wide OpenCLIP encoder (vidiff and diffusers both know SD 2.x by
    that width) through linear projections, and is v-prediction (SD 2.1's scheduler config); SDXL's two
    encoders differ in width (diffusers tells a file's CLIP-L from its bigG by the positional embedding's
    width: with tiny_parts' two 32-wide encoders it loads CLIP-L's weights into text_encoder_2)."""
    if kind == "sd1":
        return tiny_parts(seed=seed)
    base = tiny_parts(seed=seed, kind="sd1" if kind == "sd2" else kind)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 100)
        if kind == "sd2":
            unet = _unet(base.unet, cross_attention_dim=1024, use_linear_projection=True)
            encoder = _text_encoder(base.text_encoder, hidden_size=1024, num_attention_heads=16, hidden_act="gelu")
            scheduler = PNDMScheduler.from_config({**SD15_SCHEDULER_CONFIG, "prediction_type": "v_prediction"})
            return replace(base, unet=unet, text_encoder=encoder, scheduler_config=scheduler.config, kind="sd2")
        # SDXL: CLIP-L 32 wide, bigG 48 wide with a 40-wide projection (the pooled text); several
        # transformer layers in a block, as SDXL has
        encoder_2 = _text_encoder(base.text_encoder_2, hidden_size=48, projection_dim=40, hidden_act="gelu")
        unet = _unet(base.unet, cross_attention_dim=32 + 48, projection_class_embeddings_input_dim=40 + 6 * 8,
                     transformer_layers_per_block=2)  # fmt: skip
    return replace(base, unet=unet, text_encoder_2=encoder_2)


COMPONENTS = {"sd1": ("unet", "vae", "text_encoder"), "sd2": ("unet", "vae", "text_encoder"),
              "sdxl": ("unet", "vae", "text_encoder", "text_encoder_2")}  # fmt: skip


@pytest.mark.parametrize("kind", ["sd2", "sdxl"])
def test_single_file_of_each_kind_loads_offline_with_a_config_folder(kind, tmp_path):
    """An original-layout file of each kind loads, with a config folder of its kind holding other weights,
    to exactly the weights it was written from, and stylises as the diffusers folder of the same model."""
    source = tiny_of_kind(kind, seed=0)
    _pipeline(tiny_of_kind(kind, seed=1)).save_pretrained(tmp_path / "config")
    _pipeline(source).save_pretrained(tmp_path / "folder")
    file = tmp_path / f"tiny-{kind}.safetensors"
    save_file(original_layout(source), str(file))

    parts = load_parts(str(file), "cpu", "fp32", model_config=str(tmp_path / "config"))
    assert parts.kind == kind
    for name in COMPONENTS[kind]:
        assert_same_weights(getattr(source, name), getattr(parts, name))
    assert parts.scheduler_config.prediction_type == ("v_prediction" if kind == "sd2" else "epsilon")
    assert parts.force_zeros_for_empty_prompt == (kind == "sdxl")

    folder = load_parts(str(tmp_path / "folder"), "cpu", "fp32")
    assert folder.kind == kind
    config = Config(prompt="a linocut", negative_prompt="", strength=0.5, steps=3)
    frame = random_frames(1)[0]
    ours = Img2ImgProcessor(parts, config)(frame, 0).image
    assert np.array_equal(ours, Img2ImgProcessor(folder, config)(frame, 0).image)
    # and the weights mattered: the config folder's own (seed 1) give another frame
    other = Img2ImgProcessor(load_parts(str(tmp_path / "config"), "cpu", "fp32"), config)(frame, 0).image
    assert not np.array_equal(ours, other)


def test_original_layout_of_each_kind_is_what_diffusers_reads():
    """The layout's names as diffusers' loader checks them to tell the kinds apart (and vidiff's own check)."""
    keys = {kind: original_layout(tiny_of_kind(kind)) for kind in ("sd1", "sd2", "sdxl")}
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys["sd1"]
    assert keys["sd2"]["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"].shape == (3 * 1024, 1024)
    cross_attention = "model.diffusion_model.input_blocks.3.1.transformer_blocks.0.attn2.to_k.weight"
    assert keys["sd2"][cross_attention].shape[-1] == 1024  # diffusers' sign of SD 2.x (at input_blocks.2 in SD)
    assert keys["sd2"]["model.diffusion_model.input_blocks.3.1.proj_in.weight"].ndim == 2  # linear, as SD 2.x's
    assert keys["sd1"]["model.diffusion_model.input_blocks.3.1.proj_in.weight"].ndim == 4  # 1×1 convolution
    assert "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight" in keys["sdxl"]
    assert keys["sdxl"]["conditioner.embedders.1.model.positional_embedding"].shape == (77, 48)
    assert keys["sdxl"]["conditioner.embedders.1.model.text_projection"].shape == (48, 40)  # (width, embed)
    assert "model.diffusion_model.label_emb.0.0.weight" in keys["sdxl"]
    assert "model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn1.to_q.weight" in keys["sdxl"]
    assert keys["sdxl"]["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4
    for kind, state in keys.items():
        assert checkpoint_kind({key: tuple(value.shape) for key, value in state.items()}, "f") == kind


def test_single_file_missing_text_encoder_tensors_is_refused(folders, tmp_path):
    """diffusers loads a file's text encoder without the tensors it lacks (left on the meta device): one
    line naming the part, not a traceback when it is moved to the device."""
    state = original_layout(tiny_parts())
    del state["cond_stage_model.transformer.text_model.final_layer_norm.weight"]
    save_file(state, str(tmp_path / "incomplete.safetensors"))
    with pytest.raises(VidiffError, match="lacks 1 tensor.* of its text_encoder .*final_layer_norm.weight"):
        load_parts(str(tmp_path / "incomplete.safetensors"), "cpu", "fp32", model_config=str(folders / "sd1-config"))


def test_single_file_without_a_config_says_to_give_one(folders):
    with pytest.raises(VidiffError, match="SD 1.x checkpoint whose config is not available offline.*model_config"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32")


def test_single_file_with_a_config_of_another_kind_is_refused(folders):
    with pytest.raises(VidiffError, match="is an SD 1.x checkpoint but model_config .* is an SDXL model"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32", model_config=str(folders / "sdxl"))


def test_model_config_that_is_not_a_diffusers_folder(folders, tmp_path):
    with pytest.raises(VidiffError, match="^model_config .*model_index.json"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32", model_config=str(tmp_path))


def test_pickle_checkpoint_needs_allow_pickle(tmp_path):
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"never unpickled")
    with pytest.raises(VidiffError, match="pickle.*allow_pickle"):
        load_parts(str(pickle), "cpu", "fp32", model_config=str(tmp_path))


def test_a_lora_given_as_the_model_is_named_as_a_lora(tmp_path):
    lora = write_tiny_lora(tmp_path)
    with pytest.raises(VidiffError, match="not a Stable Diffusion checkpoint .*lora"):
        load_parts(str(lora), "cpu", "fp32")


UNET = "model.diffusion_model.input_blocks.0.0.weight"


@pytest.mark.parametrize(
    "keys, kind",
    [
        ({UNET: (320, 4, 3, 3), "cond_stage_model.transformer.text_model.x": (1,)}, "sd1"),
        ({UNET: (320, 4, 3, 3), "cond_stage_model.model.transformer.x": (1,)}, "sd2"),
        ({UNET: (320, 4, 3, 3), "conditioner.embedders.0.transformer.x": (1,),
          "conditioner.embedders.1.model.x": (1,)}, "sdxl"),
    ],
)  # fmt: skip
def test_checkpoint_kind_from_tensor_names(keys, kind):
    assert checkpoint_kind(keys, "f") == kind


@pytest.mark.parametrize(
    "keys, message",
    [
        ({UNET: (320, 9, 3, 3), "cond_stage_model.transformer.x": (1,)}, "9 input channels"),
        ({UNET: (384, 4, 3, 3), "conditioner.embedders.0.model.x": (1,)}, "refiner"),
        ({"control_model.time_embed.0.weight": (1,)}, "ControlNet"),
        ({"first_stage_model.encoder.conv_in.weight": (1,), "first_stage_model.decoder.x": (1,)}, "VAE"),
    ],
)
def test_checkpoint_of_a_kind_vidiff_does_not_run(keys, message):
    with pytest.raises(VidiffError, match=message):
        checkpoint_kind(keys, "f")


def test_sdxl_folder_loads_as_sdxl(folders):
    parts = load_parts(str(folders / "sdxl"), "cpu", "fp32")
    assert parts.kind == "sdxl" and parts.text_encoder_2 is not None and parts.force_zeros_for_empty_prompt
    assert_same_weights(tiny_parts(kind="sdxl").unet, parts.unet)


def test_folder_of_another_pipeline_is_refused(folders, tmp_path):
    index = json.loads((folders / "sd1-config" / "model_index.json").read_text())
    (tmp_path / "model_index.json").write_text(json.dumps({**index, "_class_name": "FluxPipeline"}))
    with pytest.raises(VidiffError, match="FluxPipeline; vidiff runs Stable Diffusion 1.x, 2.x and XL"):
        load_parts(str(tmp_path), "cpu", "fp32")


def test_v_prediction_model_matches_diffusers(folders, tmp_path):
    """SD 2.x's v-prediction comes with the model's scheduler config, which every sampler is built from."""
    folder = tmp_path / "v-model"
    pipe = _pipeline(tiny_parts())
    pipe.scheduler.register_to_config(prediction_type="v_prediction")
    pipe.save_pretrained(folder)
    parts = load_parts(str(folder), "cpu", "fp32")
    assert parts.scheduler_config.prediction_type == "v_prediction"
    config = Config(prompt="a fresco", negative_prompt="", strength=0.6, steps=6, scheduler="ddim", seed=5)
    frame = random_frames(1)[0]
    ours = Img2ImgProcessor(parts, config)(frame, 0).image
    reference = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    reference.scheduler = make_scheduler("ddim", reference.scheduler.config)
    reference.set_progress_bar_config(disable=True)
    theirs = np.array(reference(prompt=config.prompt, image=Image.fromarray(frame), strength=config.strength,
                                num_inference_steps=config.steps, guidance_scale=config.guidance,
                                generator=torch.Generator("cpu").manual_seed(config.seed)).images[0])  # fmt: skip
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    epsilon = Img2ImgProcessor(tiny_parts(), config)(frame, 0).image
    assert np.abs(ours.astype(int) - epsilon.astype(int)).max() > 4  # the prediction type did matter
