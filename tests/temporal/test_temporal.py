"""Temporal tools: each has its intended effect, and is off when its flag is off."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import pan, run_frames, textured, warp_error
import vidiff.pipelines.latents as latents_module
from vidiff.settings.config import Config
from vidiff.temporal.change import cut_score, is_cut
from vidiff.temporal.flow import backward_flow, warp
from vidiff.pipelines.img2img import Img2ImgProcessor
from vidiff.temporal.blending import flow_blend
from vidiff.temporal.color import match_colors
from vidiff.temporal.noise import warp_noise


def test_backward_flow_recovers_a_known_shift():
    prev, cur = pan(2, dx=3, dy=2, size=(160, 120))
    flow, trusted = backward_flow(prev, cur)
    assert np.median(flow[..., 0]) == pytest.approx(-3, abs=0.2)
    assert np.median(flow[..., 1]) == pytest.approx(-2, abs=0.2)
    # uncovered pixels at the leading edges are not trusted; the interior is
    assert trusted[20:-20, 20:-20].mean() > 0.95 and not trusted[:, :2].all()
    assert np.abs(warp(prev, flow).astype(int) - cur)[trusted].mean() < 2


def test_cut_score_is_low_within_a_shot_and_high_across_a_cut():
    a, b = pan(2, dx=2, size=(128, 96))
    other = np.full_like(a, (20, 90, 200))
    assert cut_score(a, b) < 0.2 and not is_cut(a, b, Config.cut_threshold)
    assert is_cut(a, other, Config.cut_threshold) and not is_cut(a, other, threshold=None)


def test_warp_noise_follows_the_flow_and_stays_gaussian():
    generator = torch.Generator().manual_seed(0)
    prev = torch.randn(1, 4, 32, 32, generator=generator)
    fresh = torch.randn(1, 4, 32, 32, generator=generator)
    flow = torch.zeros(32, 32, 2)
    flow[..., 0] = -1.0  # content moved one latent pixel to the right
    trusted = torch.ones(32, 32, dtype=torch.bool)
    out, offset = warp_noise(prev, flow, trusted, fresh)
    assert torch.equal(out[..., 1:], prev[..., :-1])  # carried along
    assert torch.equal(out[..., 0], fresh[..., 0])  # uncovered column: fresh noise
    assert offset.abs().max() < 1e-6  # whole-pixel motion leaves no remainder
    # nothing trusted: all fresh
    assert torch.equal(warp_noise(prev, flow, torch.zeros_like(trusted), fresh)[0], fresh)


def test_warp_noise_adds_up_slow_motion_instead_of_rounding_it_away():
    generator = torch.Generator().manual_seed(3)
    start = torch.randn(1, 4, 16, 16, generator=generator)
    flow = torch.zeros(16, 16, 2)
    flow[..., 0] = -0.25  # a quarter of a latent pixel to the right per frame
    trusted = torch.ones(16, 16, dtype=torch.bool)
    noise, offset = start, None
    for frame in range(4):
        noise, offset = warp_noise(noise, flow, trusted, torch.randn(1, 4, 16, 16, generator=generator), offset)
        if frame < 2:
            assert torch.equal(noise[..., 1:], start[..., 1:])  # not a whole pixel yet: it stays
    # four quarter-pixel steps make one whole pixel: the noise has moved exactly one to the right
    assert torch.equal(noise[..., 1:], start[..., :-1])
    assert offset[:, 1:].abs().max() < 1e-6


def test_warp_noise_offsets_stay_within_a_pixel_and_samples_keep_moving_on_a_slow_diagonal_pan():
    """A pan of (0.75, 0.25) latent pixels a frame for 12 frames: each carried sample must be the one
    nearest where the content was, so its offset stays within a pixel and almost every pixel away
    from the entering edge keeps a carried sample (an earlier version drifted to offsets of 5 px)."""
    size = 24
    flow = torch.zeros(size, size, 2)
    flow[..., 0], flow[..., 1] = -0.75, -0.25  # backward flow: the content was up and to the left
    trusted = torch.ones(size, size, dtype=torch.bool)
    generator = torch.Generator().manual_seed(0)
    noise, offset = torch.randn(1, 4, size, size, generator=generator), None
    for _ in range(12):
        fresh = torch.randn(1, 4, size, size, generator=generator)
        noise, offset = warp_noise(noise, flow, trusted, fresh, offset)
        assert offset.abs().max() < 1.0
        carried = (noise[0, 0] != fresh[0, 0])[2:, 2:]  # away from the edges the content enters through
        assert carried.float().mean() >= 0.9
    assert 0.85 < noise.std() < 1.15


def test_warped_noise_under_zoom_keeps_unit_variance_where_bilinear_would_not():
    generator = torch.Generator().manual_seed(1)
    prev = torch.randn(1, 4, 64, 64, generator=generator)
    fresh = torch.randn(1, 4, 64, 64, generator=generator)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    flow = torch.stack([(xs - 32) * -0.4, (ys - 32) * -0.4], -1)  # a strong zoom in: many pixels share a source
    out, _ = warp_noise(prev, flow, torch.ones(64, 64, dtype=torch.bool), fresh)
    assert out.std().item() == pytest.approx(1.0, abs=0.05)
    assert out.mean().item() == pytest.approx(0.0, abs=0.05)
    # no sample is used twice: neighbouring pixels are not copies of each other
    duplicates = (out[..., 1:] == out[..., :-1]).float().mean().item()
    assert duplicates < 0.01


def test_flow_blend_respects_weight_and_trust():
    frame, prev = textured(48, 64, 1), textured(48, 64, 2)
    trusted = np.zeros((48, 64), bool)
    trusted[:, 32:] = True
    mixed = flow_blend(frame, prev, trusted, 0.5)
    assert np.array_equal(mixed[:, :32], frame[:, :32].astype(np.float32))  # occluded: the current frame
    assert np.allclose(mixed[:, 32:], (frame[:, 32:].astype(np.float32) + prev[:, 32:]) / 2)


def test_match_colors_takes_the_reference_statistics():
    import cv2

    image = textured(48, 64, 3)
    reference = (textured(48, 64, 4) * 0.5 + np.array([120, 30, 10])).astype(np.uint8)
    matched = match_colors(image, reference)
    lab = cv2.cvtColor(matched, cv2.COLOR_RGB2LAB).astype(float)
    ref = cv2.cvtColor(reference, cv2.COLOR_RGB2LAB).astype(float)
    assert np.allclose(lab.mean((0, 1)), ref.mean((0, 1)), atol=2)
    assert np.allclose(lab.std((0, 1)), ref.std((0, 1)), atol=2)


@pytest.mark.parametrize(
    "flag",
    [{"flow_blend": 0.6}, {"fusion": 0.8}, {"color_match": True}, {"cross_frame_attn": True}, {"noise": "warped"}],
)
def test_each_technique_changes_later_frames_but_not_the_first(tiny, flag):
    frames = pan(3, dx=8, seed=5)
    plain = run_frames(tiny, frames)
    styled = run_frames(tiny, frames, **flag)
    assert np.abs(styled[0].image.astype(int) - plain[0].image).max() <= 1  # the first frame has no past
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(plain[1:], styled[1:]))


def test_cross_frame_attention_leaves_the_unet_as_it_was(tiny):
    before = dict(tiny.unet.attn_processors)
    frames = pan(2, dx=8)
    reference = run_frames(tiny, frames)
    run_frames(tiny, frames, cross_frame_attn=True)
    assert {k: type(v) for k, v in tiny.unet.attn_processors.items()} == {k: type(v) for k, v in before.items()}
    again = run_frames(tiny, frames)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(reference, again))


def test_flow_blend_starts_from_the_previous_output_warped_onto_the_frame(tiny, monkeypatch):
    # the tiny random model doesn't reproduce its input, so the effect is checked where it acts:
    # the image the VAE encodes is the frame blended with the previous output, warped by the flow
    frames = pan(2, dx=4, seed=7)
    encoded = []
    original = latents_module.to_tensor
    monkeypatch.setattr(latents_module, "to_tensor", lambda image, parts: encoded.append(np.array(image)) or original(image, parts))
    results = run_frames(tiny, frames, flow_blend=0.7)
    flow, trusted = backward_flow(frames[0], frames[1])
    expected = flow_blend(frames[1], warp(results[0].image, flow), trusted, 0.7)
    assert np.array_equal(encoded[0], frames[0])
    assert np.allclose(encoded[1], expected)
    assert np.abs(encoded[1] - warp(results[0].image, flow))[trusted].mean() < np.abs(
        frames[1].astype(float) - warp(results[0].image, flow)
    )[trusted].mean() * 0.5


def test_warped_noise_lowers_warp_error_against_fixed_noise_on_a_pan(tiny):
    frames = pan(5, dx=8, size=(128, 96), seed=9)  # one latent pixel per frame; DIS needs some size
    fixed = [r.image for r in run_frames(tiny, frames, strength=0.9)]
    warped = [r.image for r in run_frames(tiny, frames, strength=0.9, noise="warped")]
    assert warp_error(frames, warped) < warp_error(frames, fixed)


def test_a_cut_resets_the_state(tiny):
    shot_a = pan(3, dx=4, seed=1)
    shot_b = [np.ascontiguousarray(np.full_like(f, (30, 160, 60)) // 2 + f[::-1] // 2) for f in pan(2, dx=4, seed=2)]
    settings = dict(blend=0.5, flow_blend=0.5, color_match=True, noise="warped", cross_frame_attn=True)
    results = run_frames(tiny, shot_a + shot_b, **settings)
    assert [r.new_shot for r in results] == [True, False, False, True, False]
    # the first frame after the cut is stylised as if the video began there
    alone = run_frames(tiny, shot_b[:1], **settings)[0]
    with Img2ImgProcessor(tiny, Config(prompt="a wooden carving", steps=4, strength=0.5, seed=3).replace(**settings)) as s:
        fresh = s(shot_b[0], 3, None)
    assert np.array_equal(results[3].image, fresh.image)
    assert alone.new_shot
    # and with cuts off, the state runs on across the cut
    uncut = run_frames(tiny, shot_a + shot_b, cuts=False, **settings)
    assert not uncut[3].new_shot and not np.array_equal(uncut[3].image, results[3].image)
