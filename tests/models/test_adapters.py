"""LoRAs and textual-inversion embeddings, checked against diffusers' own loaders on tiny models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file, save_file

from helpers import write_tiny_lora
from helpers import reference_frame, reference_pipeline, random_frames
from vidiff.settings.config import Config
from vidiff.errors import VidiffError
from vidiff.models.loading import load_parts
from vidiff.models.tiny import tiny_parts
from vidiff.pipelines.prompts import PromptEncoder
from vidiff.pipelines.img2img import Img2ImgProcessor

CONFIG = Config(prompt="a watercolour of a heron", negative_prompt="blurry", strength=0.6, steps=5, seed=4)


@pytest.fixture(scope="module")
def lora_file(tmp_path_factory):
    return write_tiny_lora(tmp_path_factory.mktemp("lora"))


def frame_of(parts, config=CONFIG) -> np.ndarray:
    return Img2ImgProcessor(parts, config)(random_frames(1)[0], 0).image


def test_lora_at_scale_0_is_no_lora(tiny, lora_file):
    parts = load_parts("tiny", "cpu", "fp32", lora=(f"{lora_file}:0",))
    for name, weight in tiny.unet.state_dict().items():
        assert torch.equal(weight, parts.unet.state_dict()[name]), name
    assert np.array_equal(frame_of(parts), frame_of(tiny))


# lcm: how an LCM-LoRA is run (few steps, low guidance)
@pytest.mark.parametrize("config", [CONFIG, CONFIG.replace(scheduler="lcm", steps=8, guidance=1.5)], ids=["dpm", "lcm"])
def test_lora_at_a_scale_matches_diffusers_fused_lora(tiny, lora_file, config):
    ours = frame_of(load_parts("tiny", "cpu", "fp32", lora=(f"{lora_file}:0.7",)), config)
    pipe = reference_pipeline(tiny_parts(), config.scheduler)
    pipe.load_lora_weights(str(lora_file.parent))
    pipe.fuse_lora(lora_scale=0.7)
    theirs = reference_frame(pipe, random_frames(1)[0], config)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    # and the LoRA does change the picture: the match above is not a match with the plain model
    assert np.abs(ours.astype(int) - frame_of(tiny, config).astype(int)).max() > 4


def test_lora_leaves_a_plain_unet(lora_file):
    parts = load_parts("tiny", "cpu", "fp32", lora=(f"{lora_file}:1",))
    assert not any("lora" in name for name in parts.unet.state_dict())
    assert parts.lora == (f"{lora_file}:1",)


def test_lora_for_another_kind_of_model_is_one_clear_error(tmp_path):
    sdxl_lora = write_tiny_lora(tmp_path / "xl", kind="sdxl")
    with pytest.raises(VidiffError, match="^lora .*does not fit the SD 1.x model"):
        load_parts("tiny", "cpu", "fp32", lora=(str(sdxl_lora),))


def test_lora_pickle_needs_allow_pickle(tmp_path):
    pickle = tmp_path / "style.bin"
    pickle.write_bytes(b"never unpickled")
    with pytest.raises(VidiffError, match="allow_pickle"):
        load_parts("tiny", "cpu", "fp32", lora=(str(pickle),))


def test_embedding_token_encodes_as_diffusers_textual_inversion(tmp_path):
    vectors = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))  # a two-vector embedding
    file = tmp_path / "wood-style.safetensors"
    save_file({"emb_params": vectors}, str(file))
    parts = load_parts("tiny", "cpu", "fp32", embedding=(str(file),))  # the token is the file's name

    reference = reference_pipeline(tiny_parts(), "ddim")
    reference.load_textual_inversion(str(file), token="wood-style")
    prompt = "a wood-style fox"
    theirs = reference.encode_prompt(prompt, torch.device("cpu"), 1, False)[0]
    ours = PromptEncoder(parts)(prompt).hidden
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(ours, PromptEncoder(tiny_parts())(prompt).hidden, atol=1e-3)


def test_sdxl_embedding_goes_into_both_encoders(tmp_path):
    generator = torch.Generator().manual_seed(1)
    file = tmp_path / "ink.safetensors"
    save_file({"clip_l": torch.randn(1, 32, generator=generator), "clip_g": torch.randn(1, 32, generator=generator)},
              str(file))  # fmt: skip
    parts = load_parts("tiny-sdxl", "cpu", "fp32", embedding=(f"{file}:<ink>",))

    fresh = tiny_parts(kind="sdxl")
    reference = StableDiffusionXLPipeline(
        vae=fresh.vae, text_encoder=fresh.text_encoder, text_encoder_2=fresh.text_encoder_2,
        tokenizer=fresh.tokenizer, tokenizer_2=fresh.tokenizer_2, unet=fresh.unet,
        scheduler=reference_pipeline(fresh, "ddim").scheduler,
    )  # fmt: skip
    state = load_file(str(file))
    reference.load_textual_inversion(state["clip_l"], token="<ink>", text_encoder=fresh.text_encoder,
                                     tokenizer=fresh.tokenizer)  # fmt: skip
    reference.load_textual_inversion(state["clip_g"], token="<ink>", text_encoder=fresh.text_encoder_2,
                                     tokenizer=fresh.tokenizer_2)  # fmt: skip
    hidden, _, pooled, _ = reference.encode_prompt("an <ink> drawing", device=torch.device("cpu"),
                                                   do_classifier_free_guidance=False)  # fmt: skip
    ours = PromptEncoder(parts)("an <ink> drawing")
    assert torch.allclose(ours.hidden, hidden, atol=1e-6) and torch.allclose(ours.pooled, pooled, atol=1e-6)


def test_embedding_of_the_wrong_kind_is_one_clear_error(tmp_path):
    file = tmp_path / "xl.safetensors"
    save_file({"clip_l": torch.zeros(1, 32), "clip_g": torch.zeros(1, 32)}, str(file))
    with pytest.raises(VidiffError, match="SDXL embedding"):
        load_parts("tiny", "cpu", "fp32", embedding=(str(file),))
    wide = tmp_path / "wide.safetensors"
    save_file({"emb_params": torch.zeros(1, 768)}, str(wide))
    with pytest.raises(VidiffError, match="^embedding"):
        load_parts("tiny", "cpu", "fp32", embedding=(str(wide),))
