"""Text conditioning: encode each text once per video, then combine embeddings linearly per frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models import ModelParts


@dataclass(frozen=True)
class TextEmbedding:
    """What the UNet is conditioned on for one text; linear combinations of these mix prompts."""

    hidden: torch.Tensor  # (1, tokens, dim): the text encoder's last hidden states, attended to by the UNet
    pooled: torch.Tensor | None = None  # a pooled text embedding, for models that take one (SDXL); else None

    def scaled(self, weight: float) -> "TextEmbedding":
        return TextEmbedding(self.hidden * weight, None if self.pooled is None else self.pooled * weight)

    def __add__(self, other: "TextEmbedding") -> "TextEmbedding":
        pooled = None if self.pooled is None else self.pooled + other.pooled
        return TextEmbedding(self.hidden + other.hidden, pooled)


def combine(weighted: list[tuple[TextEmbedding, float]]) -> TextEmbedding:
    """Σ wᵢ·Eᵢ; a single term with weight 1 is returned as is, so that it stays bit-exact."""
    if len(weighted) == 1 and weighted[0][1] == 1.0:
        return weighted[0][0]
    total = None
    for embedding, weight in weighted:
        term = embedding.scaled(weight)
        total = term if total is None else total + term
    return total


class PromptEncoder:
    """Encodes texts with the model's tokenizer and text encoder, each distinct text once."""

    def __init__(self, parts: ModelParts):
        self.parts = parts
        self._cache: dict[str, TextEmbedding] = {}

    def __call__(self, text: str) -> TextEmbedding:
        if text not in self._cache:
            self._cache[text] = self._encode(text)
        return self._cache[text]

    @torch.no_grad()
    def _encode(self, text: str) -> TextEmbedding:
        tokenizer, encoder = self.parts.tokenizer, self.parts.text_encoder
        tokens = tokenizer(
            text, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.parts.device)
        hidden = encoder(tokens.input_ids.to(self.parts.device), attention_mask=mask)[0]
        return TextEmbedding(hidden.to(dtype=encoder.dtype, device=self.parts.device))
