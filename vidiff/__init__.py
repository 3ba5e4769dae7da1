"""vidiff: restyle videos with Stable Diffusion img2img, frame by frame and consistently."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module; imported on first use so that `vidiff --help` doesn't wait for torch and diffusers
_API = {
    "Config": "settings.config",
    "VidiffError": "errors",
    "Interrupted": "errors",
    "ModelParts": "models.parts",
    "load_parts": "models.loading",
    "load_preset": "settings.presets",
    "RunResult": "run",
    "stylize_video": "run",
    "score_video": "score",
    "ScoreReport": "score",
    "Progress": "run",
    "try_looks": "tryout",
    "TryResult": "tryout",
    "TrainConfig": "train.config",
    "train_lora": "train.loop",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'vidiff' has no attribute {name!r}")
