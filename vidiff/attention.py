"""Cross-frame attention: self-attention in the UNet's up blocks also attends to an anchor frame
(the shot's first) and to the previous frame, as Rerender-A-Video and Text2Video-Zero do.

Installed as diffusers attention processors only when asked for; without them the UNet is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class CrossFrameMemory:
    """The hidden states each up-block self-attention saw, per (layer, step), for this frame and two others."""

    step: int = 0
    current: dict = field(default_factory=dict)
    anchor: dict = field(default_factory=dict)
    previous: dict = field(default_factory=dict)

    def end_frame(self, new_shot: bool) -> None:
        """Call after each frame: it becomes the previous frame, and the anchor if it began a shot."""
        if new_shot:
            self.anchor = self.current
        self.previous, self.current = self.current, {}

    def reset(self) -> None:
        self.anchor, self.previous, self.current = {}, {}, {}


class CrossFrameAttnProcessor:
    """Self-attention whose keys and values also come from the anchor and previous frames' tokens."""

    def __init__(self, name: str, memory: CrossFrameMemory):
        self.name, self.memory = name, memory

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        memory, key_id = self.memory, (self.name, self.memory.step)
        residual = hidden_states
        batch = hidden_states.shape[0]
        memory.current[key_id] = hidden_states
        others = [m[key_id] for m in (memory.anchor, memory.previous) if key_id in m and m[key_id].shape == hidden_states.shape]
        # the anchor and the previous frame may be the same frame: attend to it once
        if len(others) == 2 and others[0] is others[1]:
            others = others[:1]
        context = torch.cat([hidden_states, *others], dim=1) if others else hidden_states

        query = attn.to_q(hidden_states)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def install_cross_frame_attention(unet, memory: CrossFrameMemory) -> dict:
    """Put cross-frame processors on the up blocks' self-attention (attn1); returns the old processors."""
    old = dict(unet.attn_processors)
    new = {
        name: CrossFrameAttnProcessor(name, memory) if name.startswith("up_blocks") and ".attn1." in name else proc
        for name, proc in old.items()
    }
    unet.set_attn_processor(new)
    return old
