"""Samplers by name, each built from the model's own scheduler config, as diffusers users swap them;
and the arithmetic that turns a model output into a denoised estimate and back."""

from __future__ import annotations

import inspect
import math


# name -> (diffusers class, overrides applied on top of the model's scheduler config)
SCHEDULERS: dict[str, tuple[str, dict]] = {
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++2m": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "dpm++2m-karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lcm": ("LCMScheduler", {}),
}


def make_scheduler(name: str, model_config):
    """A fresh scheduler of kind `name`, built with from_config on the model's scheduler config."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    class_name, overrides = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(model_config, **overrides)


def noise_level(scheduler, timestep, position: int) -> tuple[float, float]:
    """(α, σ) of the variance-preserving form x = α·x0 + σ·ε at one step: from the sampler's sigmas
    where it keeps them (`position` is the step's index into them), else from alphas_cumprod."""
    sigmas = getattr(scheduler, "sigmas", None)
    if sigmas is not None and position < len(sigmas):
        sigma = float(sigmas[position])
        alpha = 1.0 / math.sqrt(1.0 + sigma**2)
        return alpha, sigma * alpha
    alpha_bar = float(scheduler.alphas_cumprod[int(timestep)])
    return math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar)


def predicted_original(output, sample, alpha: float, sigma: float, prediction_type: str):
    """The denoised estimate x0 a model output stands for, given the variance-preserving sample."""
    if prediction_type == "epsilon":
        return (sample - sigma * output) / alpha
    if prediction_type == "v_prediction":
        return alpha * sample - sigma * output
    return output  # "sample": the model predicts x0 itself


def output_for(original, sample, alpha: float, sigma: float, prediction_type: str):
    """The model output that stands for the denoised estimate `original` at `sample`: predicted_original's inverse."""
    if prediction_type == "sample":
        return original
    noise = (sample - alpha * original) / sigma
    return noise if prediction_type == "epsilon" else alpha * noise - sigma * original


def get_timesteps(scheduler, steps: int, strength: float, device):
    """The timesteps of a strength-limited run, as diffusers' img2img pipelines take them; setting them
    also resets the sampler's state, so each window starts clean."""
    scheduler.set_timesteps(steps, device=device)
    t_start = steps - min(int(steps * strength), steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * scheduler.order)
    return scheduler.timesteps[t_start * scheduler.order :]


def step_kwargs(scheduler, generators: list) -> dict:
    """The extra arguments this sampler's step takes: deterministic DDIM (eta 0), and each frame's
    generator for the samplers that draw noise at every step."""
    params = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in params:
        kwargs["eta"] = 0.0
    if "generator" in params:
        kwargs["generator"] = generators
    return kwargs
