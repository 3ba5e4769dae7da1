"""ControlNet: the preprocessors, and the stylizer's ControlNet path against diffusers' own
ControlNet img2img pipelines given the same control images, on tiny ControlNets made from the tiny UNets."""

from __future__ import annotations

import numpy as np
import pytest
from diffusers import StableDiffusionControlNetImg2ImgPipeline, StableDiffusionXLControlNetImg2ImgPipeline
from PIL import Image

from helpers import tiny_controlnet
from helpers import reference_frame as plain_reference_frame, random_frames
from vidiff.settings.config import Config
from vidiff.pipelines.control_images import PREPROCESSORS, canny, control_image, depth_from_luma, softedge
from vidiff.errors import VidiffError
from vidiff.models.loading import load_parts
from vidiff.models.tiny import tiny_parts
from vidiff.pipelines.samplers import make_scheduler
from vidiff.pipelines.img2img import Img2ImgProcessor


def shapes_frame(size=(64, 48)) -> np.ndarray:
    """A dark frame with a bright rectangle and a mid-grey disc: known edges."""
    width, height = size
    frame = np.full((height, width, 3), 30, np.uint8)
    frame[10:30, 8:30] = 220
    y, x = np.mgrid[0:height, 0:width]
    frame[(x - 46) ** 2 + (y - 30) ** 2 < 81] = 128
    return frame


@pytest.mark.parametrize("kind", list(PREPROCESSORS))
def test_every_preprocessor_gives_an_rgb_image_of_the_frame_size(kind):
    frame = shapes_frame()
    out = control_image(kind, frame, Config.canny_low, Config.canny_high)
    assert out.shape == frame.shape and out.dtype == np.uint8


def test_canny_marks_the_rectangle_edges_and_its_thresholds_matter():
    frame = shapes_frame()
    edges = canny(frame, Config.canny_low, Config.canny_high)[:, :, 0]
    assert edges[20, 7:10].max() == 255  # the rectangle's left side
    assert edges[40:, :20].max() == 0  # flat background stays black
    faint = np.full_like(frame, 30)
    faint[10:30, 8:30] = 60  # a low-contrast rectangle alone: found by low thresholds only
    assert canny(faint, 10, 20).max() == 255 and canny(faint, 200, 400).max() == 0


def test_softedge_is_graded_and_depth_from_luma_follows_brightness():
    frame = shapes_frame()
    soft = softedge(frame)[:, :, 0]
    assert soft[20, 8] > 100 and soft[40, 5] == 0 and len(np.unique(soft)) > 10
    depth = depth_from_luma(frame)[:, :, 0]
    assert depth[20, 18] > depth[30, 46] > depth[44, 4]  # bright rectangle > grey disc > dark background


@pytest.fixture(scope="module")
def controlnet_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("controlnets")
    tiny_controlnet(tiny_parts().unet, seed=0).save_pretrained(root / "sd1-a")
    tiny_controlnet(tiny_parts().unet, seed=1).save_pretrained(root / "sd1-b")
    tiny_controlnet(tiny_parts(kind="sdxl").unet, seed=2).save_pretrained(root / "sdxl")
    return root


def reference(parts, controlnet, scheduler):
    arguments = dict(
        vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer, unet=parts.unet,
        controlnet=controlnet, scheduler=make_scheduler(scheduler, parts.scheduler_config),
    )  # fmt: skip
    if parts.kind == "sdxl":
        pipe = StableDiffusionXLControlNetImg2ImgPipeline(
            text_encoder_2=parts.text_encoder_2, tokenizer_2=parts.tokenizer_2, **arguments
        )
    else:
        pipe = StableDiffusionControlNetImg2ImgPipeline(
            safety_checker=None, feature_extractor=None, requires_safety_checker=False, **arguments
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def reference_frame(pipe, frame, config, scales) -> np.ndarray:
    nets = len(scales)
    controls = [Image.fromarray(control_image(config.control[i % len(config.control)], frame, config.canny_low, config.canny_high)) for i in range(nets)]
    return plain_reference_frame(
        pipe, frame, config,
        negative_prompt=config.negative_prompt or None,
        control_image=controls[0] if nets == 1 else controls,
        controlnet_conditioning_scale=scales[0] if nets == 1 else scales,
    )  # fmt: skip


CASES = {
    "sd1-one-net-cfg": ("tiny", ["sd1-a:0.8"], ["canny"], 7.5),
    "sd1-two-nets": ("tiny", ["sd1-a:1.0", "sd1-b:0.5"], ["canny", "softedge"], 7.5),
    "sd1-no-cfg": ("tiny", ["sd1-a"], ["depth-from-luma"], 1.0),
    "sdxl-one-net": ("tiny-sdxl", ["sdxl:0.9"], ["canny"], 5.0),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_controlnet_path_matches_diffusers(controlnet_folders, case):
    model, specs, controls, guidance = case
    specs = [str(controlnet_folders / spec) for spec in specs]
    parts = load_parts(model, "cpu", "fp32", controlnet=tuple(specs))
    config = Config(prompt="a bronze sculpture", negative_prompt="", strength=0.7, steps=5, guidance=guidance,
                    scheduler="dpm++2m", seed=8, controlnet=tuple(specs), control=tuple(controls))  # fmt: skip
    scales = [float(spec.rsplit(":", 1)[1]) if spec.count(":") else 1.0 for spec in specs]
    nets = parts.controlnets[0] if len(specs) == 1 else parts.controlnets
    pipe = reference(parts, nets, config.scheduler)
    stylizer = Img2ImgProcessor(parts, config)
    frame = shapes_frame((64, 48)) // 2 + random_frames(1)[0] // 2
    ours = stylizer(frame, 0).image
    theirs = reference_frame(pipe, frame, config, scales)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    plain = Img2ImgProcessor(load_parts(model, "cpu", "fp32"), config.replace(controlnet=()))(frame, 0).image
    assert np.abs(ours.astype(int) - plain.astype(int)).max() > 4  # the ControlNet did act


def test_controlnet_with_every_temporal_option(controlnet_folders):
    spec = str(controlnet_folders / "sd1-a") + ":0.7"
    parts = load_parts("tiny", "cpu", "fp32", controlnet=(spec,))
    config = Config(prompt="charcoal", strength=0.8, steps=5, scheduler="ddim", controlnet=(spec,), control=("softedge",),
                    noise="warped", blend=0.2, flow_blend=0.3, color_match=True, cross_frame_attn=True)  # fmt: skip
    frames = [np.roll(shapes_frame(), shift, axis=1) for shift in (0, 2, 4)]
    runs = []
    for _ in range(2):
        with Img2ImgProcessor(parts, config) as stylizer:
            state, images = None, []
            for index, frame in enumerate(frames):
                result = stylizer(frame, index, state)
                state, images = result.state, images + [result.image]
        runs.append(images)
    assert all(image.shape == frames[0].shape for image in runs[0])
    assert all(np.array_equal(a, b) for a, b in zip(*runs))  # the same settings give the same frames


def test_controlnet_for_another_kind_of_model_is_refused(controlnet_folders):
    with pytest.raises(VidiffError, match="not a ControlNet for an SD 1.x model"):
        load_parts("tiny", "cpu", "fp32", controlnet=(str(controlnet_folders / "sdxl"),))


def test_control_count_must_fit_the_controlnets():
    with pytest.raises(VidiffError, match=r"^control \['canny', 'softedge'\]: give one for all ControlNets"):
        Config(prompt="x", controlnet=("a", "b", "c"), control=("canny", "softedge")).validate()


def test_a_keyframed_control_scale_hits_its_keyframes(controlnet_folders):
    net = str(controlnet_folders / "sd1-a")
    scheduled = f"{net}:0:0.2, 4:1.0"
    parts = load_parts("tiny", "cpu", "fp32", controlnet=(scheduled,))
    frame = shapes_frame((64, 48)) // 2 + random_frames(1)[0] // 2

    def frame_at(index: int, spec: str) -> np.ndarray:
        config = Config(prompt="a bronze sculpture", strength=0.7, steps=5, scheduler="ddim", seed=8,
                        controlnet=(spec,), control=("canny",))  # fmt: skip
        return Img2ImgProcessor(parts, config)(frame, index).image.astype(int)

    assert np.abs(frame_at(0, scheduled) - frame_at(0, f"{net}:0.2")).max() <= 1
    assert np.abs(frame_at(4, scheduled) - frame_at(4, f"{net}:1.0")).max() <= 1
    assert np.abs(frame_at(2, scheduled) - frame_at(2, f"{net}:0.6")).max() <= 1
    assert np.abs(frame_at(0, scheduled) - frame_at(4, scheduled)).max() > 1  # the scale does change the frames


def test_every_control_setting_has_a_preprocessor():
    from vidiff.settings.config import CONTROLS

    assert tuple(PREPROCESSORS) == CONTROLS
