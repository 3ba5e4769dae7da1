"""Samplers by name, each built from the model's own scheduler config, as diffusers users swap them."""

from __future__ import annotations

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
