"""Loading models: kinds (SD 1.x, 2.x, SDXL) from diffusers folders and single files, offline, and
the errors for a wrong kind, a missing config and a pickle without --allow-pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionImg2ImgPipeline
from PIL import Image
from safetensors.torch import save_file

from conftest import write_tiny_lora
from ldm_layout import original_layout
from test_stylizer import test_frames
from vidiff.adapters import _pipeline
from vidiff.config import Config
from vidiff.errors import VidiffError
from vidiff.models import checkpoint_kind, load_parts, tiny_parts
from vidiff.schedulers import make_scheduler
from vidiff.stylizer import Stylizer


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
    frame = test_frames(1)[0]
    assert np.array_equal(Stylizer(parts, config)(frame, 0).image, Stylizer(tiny, config)(frame, 0).image)


def test_single_file_without_a_config_says_to_give_one(folders):
    with pytest.raises(VidiffError, match="SD 1.x checkpoint whose config is not available offline.*--model-config"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32")


def test_single_file_with_a_config_of_another_kind_is_refused(folders):
    with pytest.raises(VidiffError, match="is an SD 1.x checkpoint but --model-config .* is an SDXL model"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32", model_config=str(folders / "sdxl"))


def test_model_config_that_is_not_a_diffusers_folder(folders, tmp_path):
    with pytest.raises(VidiffError, match="--model-config .*model_index.json"):
        load_parts(str(folders / "tiny-sd1.safetensors"), "cpu", "fp32", model_config=str(tmp_path))


def test_pickle_checkpoint_needs_allow_pickle(tmp_path):
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"never unpickled")
    with pytest.raises(VidiffError, match="pickle.*--allow-pickle"):
        load_parts(str(pickle), "cpu", "fp32", model_config=str(tmp_path))


def test_a_lora_given_as_the_model_is_named_as_a_lora(tmp_path):
    lora = write_tiny_lora(tmp_path)
    with pytest.raises(VidiffError, match="not a Stable Diffusion checkpoint .*--lora"):
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
    frame = test_frames(1)[0]
    ours = Stylizer(parts, config)(frame, 0).image
    reference = StableDiffusionImg2ImgPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
    reference.scheduler = make_scheduler("ddim", reference.scheduler.config)
    reference.set_progress_bar_config(disable=True)
    theirs = np.array(reference(prompt=config.prompt, image=Image.fromarray(frame), strength=config.strength,
                                num_inference_steps=config.steps, guidance_scale=config.guidance,
                                generator=torch.Generator("cpu").manual_seed(config.seed)).images[0])  # fmt: skip
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    epsilon = Stylizer(tiny_parts(), config)(frame, 0).image
    assert np.abs(ours.astype(int) - epsilon.astype(int)).max() > 4  # the prediction type did matter
