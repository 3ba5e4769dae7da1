"""Text conditioning: encode each text once per video, then combine embeddings linearly per frame."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.parts import ModelParts


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
    """Encodes texts with the model's tokenizers and text encoders, each distinct text once."""

    def __init__(self, parts: ModelParts):
        self.parts = parts
        self._cache: dict[str, TextEmbedding] = {}

    def __call__(self, text: str) -> TextEmbedding:
        if text not in self._cache:
            self._cache[text] = self._encode(text)
        return self._cache[text]

    def negative(self, text: str) -> TextEmbedding:
        """The unconditional side of CFG. An empty one is all zeros where the model's config says so
        (SDXL's force_zeros_for_empty_prompt), as diffusers does when no negative prompt is given."""
        if text == "" and self.parts.force_zeros_for_empty_prompt:
            empty = self("")
            return TextEmbedding(torch.zeros_like(empty.hidden), torch.zeros_like(empty.pooled))
        return self(text)

    @torch.no_grad()
    def _encode(self, text: str) -> TextEmbedding:
        if self.parts.kind == "sdxl":
            return self._encode_sdxl(text)
        tokenizer, encoder = self.parts.tokenizer, self.parts.text_encoder
        tokens = tokenizer(
            expand_embedding_tokens(text, tokenizer), padding="max_length", max_length=tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        )  # fmt: skip
        mask = None
        if getattr(encoder.config, "use_attention_mask", False):
            mask = tokens.attention_mask.to(self.parts.device)
        hidden = encoder(tokens.input_ids.to(self.parts.device), attention_mask=mask)[0]
        return TextEmbedding(hidden.to(dtype=encoder.dtype, device=self.parts.device))

    def _encode_sdxl(self, text: str) -> TextEmbedding:
        """As diffusers' SDXL encode_prompt: both encoders' penultimate hidden states side by side, and
        the pooled (projected) embedding of the second."""
        hidden_states, pooled = [], None
        pairs = [(self.parts.tokenizer, self.parts.text_encoder), (self.parts.tokenizer_2, self.parts.text_encoder_2)]
        for tokenizer, encoder in pairs:
            tokens = tokenizer(
                expand_embedding_tokens(text, tokenizer), padding="max_length", max_length=tokenizer.model_max_length,
                truncation=True, return_tensors="pt",
            )  # fmt: skip
            output = encoder(tokens.input_ids.to(self.parts.device), output_hidden_states=True)
            if output[0].ndim == 2:  # the encoder with a projection: its first output is the pooled embedding
                pooled = output[0]
            hidden_states.append(output.hidden_states[-2])
        hidden = torch.concat(hidden_states, dim=-1)
        return TextEmbedding(hidden.to(dtype=self.parts.text_encoder_2.dtype, device=self.parts.device), pooled)


def expand_embedding_tokens(text: str, tokenizer) -> str:
    """A multi-vector embedding's token becomes its tokens 'tok tok_1 tok_2 ...', as diffusers'
    textual-inversion loader expects the prompt to be rewritten."""
    for token in set(tokenizer.tokenize(text)):
        if token in tokenizer.added_tokens_encoder:
            replacement, index = token, 1
            while f"{token}_{index}" in tokenizer.added_tokens_encoder:
                replacement += f" {token}_{index}"
                index += 1
            text = text.replace(token, replacement)
    return text
