"""Cross-frame attention: self-attention in the UNet's up blocks also attends to an anchor frame
(the shot's first) and to the previous frame, as Rerender-A-Video and Text2Video-Zero do.

Installed as diffusers attention processors only when asked for; without them the UNet is untouched.
Frames may come in a batch: each frame of it attends to the frame before it in the same batch, at
the same denoising step, which is what it would have seen one frame at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class CrossFrameMemory:
    """The hidden states each up-block self-attention saw, per (layer, step), for the frames around this batch."""

    step: int = 0
    frames: int = 1  # frames in the batch being denoised
    starts_shot: bool = False  # whether the batch's first frame begins a shot
    first: dict = field(default_factory=dict)  # the batch's first frame (the anchor, when it begins a shot)
    current: dict = field(default_factory=dict)  # the batch's last frame
    anchor: dict = field(default_factory=dict)
    previous: dict = field(default_factory=dict)

    def start_batch(self, frames: int, starts_shot: bool) -> None:
        self.frames, self.starts_shot = frames, starts_shot
        if starts_shot:
            self.reset()

    def end_batch(self) -> None:
        """Call after each batch: its last frame becomes the previous one, its first the anchor if it began a shot."""
        if self.starts_shot:
            self.anchor = self.first
        # a one-frame batch that began a shot is both: attended to once by the next frame
        self.previous = self.first if self.frames == 1 else self.current
        self.first, self.current = {}, {}

    def reset(self) -> None:
        self.anchor, self.previous, self.first, self.current = {}, {}, {}, {}

    def to_dict(self) -> dict:
        """The anchor's and previous frame's hidden states as CPU tensors keyed "layer|step", for saving."""
        # right after a shot's first frame the anchor *is* the previous frame: attended to once
        parts = ("anchor",) if self.previous is self.anchor else ("anchor", "previous")
        return {
            part: {f"{layer}|{step}": tensor.cpu() for (layer, step), tensor in getattr(self, part).items()}
            for part in parts
        }

    def load(self, data: dict, device) -> None:
        """Restore what to_dict saved, on `device`."""
        self.reset()
        for part, stored in data.items():
            restored = {}
            for key, tensor in stored.items():
                layer, step = key.rsplit("|", 1)
                restored[(layer, int(step))] = tensor.to(device)
            setattr(self, part, restored)
        if "previous" not in data:
            self.previous = self.anchor


class CrossFrameAttnProcessor:
    """Self-attention whose keys and values also come from the anchor and previous frames' tokens."""

    def __init__(self, name: str, memory: CrossFrameMemory):
        self.name, self.memory = name, memory

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        memory, key_id = self.memory, (self.name, self.memory.step)
        residual = hidden_states
        batch, tokens, channels = hidden_states.shape
        frames = memory.frames
        halves = batch // frames  # 2 under CFG (negatives first, as the batch is built), else 1
        x = hidden_states.view(halves, frames, tokens, channels)
        memory.first[key_id], memory.current[key_id] = x[:, 0].contiguous(), x[:, -1].contiguous()

        def stored(part: dict):
            value = part.get(key_id)
            return value if value is not None and value.shape == x[:, 0].shape else None

        # each frame's anchor and previous frame, and whether it has them
        if memory.starts_shot:
            anchor, has_anchor = x[:, :1].expand(-1, frames, -1, -1), [False] + [True] * (frames - 1)
            previous_first, has_first_previous = None, False
        else:
            kept = stored(memory.anchor)
            anchor = (kept if kept is not None else torch.zeros_like(x[:, 0]))[:, None].expand(-1, frames, -1, -1)
            has_anchor = [kept is not None] * frames
            previous_first = stored(memory.previous)
            has_first_previous = previous_first is not None
        first_previous = previous_first if previous_first is not None else torch.zeros_like(x[:, 0])
        previous = torch.cat([first_previous[:, None], x[:, :-1]], dim=1)
        has_previous = [has_first_previous] + [True] * (frames - 1)
        # where the anchor *is* the previous frame, attend to it once
        if memory.starts_shot and frames > 1:
            has_previous[1] = False
        if not memory.starts_shot and memory.previous is memory.anchor:
            has_previous[0] = False

        context = torch.cat([x, anchor, previous], dim=2).reshape(batch, 3 * tokens, channels)
        allowed = torch.tensor(
            [[True] * tokens + [a] * tokens + [p] * tokens for a, p in zip(has_anchor, has_previous)],
            device=hidden_states.device,
        )
        mask = allowed[None].expand(halves, -1, -1).reshape(batch, 1, 1, 3 * tokens)

        query = attn.to_q(hidden_states)
        key, value = attn.to_k(context), attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query, key, value = (t.view(batch, -1, attn.heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query, key = attn.norm_q(query), attn.norm_k(key)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
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
