"""The embedded prior's UNet: diffusers' UNet2DConditionModel for the block types the world model uses,
written out in plain torch so that loading the prior does not import diffusers.

Importing diffusers' model stack costs 5 s on 2 CPU cores and about 9 s on the GPU machine we measure
on (it pulls in transformers, torch._dynamo and, where installed, peft and scikit-learn), more than the
rest of a GPU generation's start-up. This module covers the family `DEFAULT_ARCH` belongs to: down
blocks DownBlock2D / CrossAttnDownBlock2D, up blocks UpBlock2D / CrossAttnUpBlock2D, a cross-attention
mid block, one transformer layer per attention, `attention_head_dim` read as the number of heads (as
diffusers does). Module names, and so the state dict's keys, are diffusers': the shipped weights load
into either, and tests/test_priors.py checks that both give the same output for the same weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DOWN_BLOCKS = ("DownBlock2D", "CrossAttnDownBlock2D")
UP_BLOCKS = ("UpBlock2D", "CrossAttnUpBlock2D")


def timestep_features(timesteps: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """[N] -> [N, dim] sinusoidal features, cosines first (diffusers' Timesteps(dim, flip_sin_to_cos=True, 0))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    angles = timesteps[:, None].float() * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(dim, out), nn.Linear(out, out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float = 1e-5):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, cin, eps), nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(groups, cout, eps), nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


class Attention(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k, self.to_v = nn.Linear(context_dim, dim, bias=False), nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Identity()])  # [1]: diffusers' dropout slot

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x [B, L, dim], context [B, S, context_dim] -> [B, L, dim]."""
        B, L, D = x.shape

        def split(y: Tensor) -> Tensor:
            return y.reshape(B, -1, self.heads, D // self.heads).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(context)), split(self.to_v(context)))
        return self.to_out[0](out.transpose(1, 2).reshape(B, L, D))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim)])

    def forward(self, x: Tensor) -> Tensor:
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim: int, context_dim: int, heads: int):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, context_dim, heads)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn1(h, h)
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, channels: int, context_dim: int, heads: int, groups: int):
        super().__init__()
        self.norm, self.proj_in = nn.GroupNorm(groups, channels, eps=1e-6), nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(channels, context_dim, heads)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(B, H * W, C)
        for block in self.transformer_blocks:
            h = block(h, context)
        return x + self.proj_out(h.reshape(B, H, W, C).permute(0, 3, 1, 2))


class Block(nn.Module):
    """One down or up block: (resnet, attention?) pairs, then an optional down- or upsampler."""

    def __init__(self, resnets: list[nn.Module], attentions: list[nn.Module] | None, sampler: nn.Module | None,
                 up: bool):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if attentions is not None:
            self.attentions = nn.ModuleList(attentions)
        if sampler is not None:
            setattr(self, "upsamplers" if up else "downsamplers", nn.ModuleList([sampler]))

    def layers(self):
        attentions = getattr(self, "attentions", [None] * len(self.resnets))
        return zip(self.resnets, attentions)

    def sampler(self) -> nn.Module | None:
        samplers = getattr(self, "upsamplers", None) or getattr(self, "downsamplers", None)
        return samplers[0] if samplers is not None else None


class Downsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """Called like diffusers' UNet2DConditionModel, but returns the tensor:
    sample [N, in, h, w], timesteps [N] (or a scalar), encoder_hidden_states [N, S, cross_attention_dim]
    -> predicted noise [N, out, h, w]."""

    def __init__(self, in_channels: int, out_channels: int, cross_attention_dim: int,
                 block_out_channels: list[int], layers_per_block: int, attention_head_dim: int,
                 down_block_types: list[str], up_block_types: list[str], norm_num_groups: int = 32):
        super().__init__()
        for name in [*down_block_types, *up_block_types]:
            assert name in DOWN_BLOCKS + UP_BLOCKS, f"block type {name} is not one gsdi's UNet implements"
        channels, heads, groups = list(block_out_channels), attention_head_dim, norm_num_groups
        ctx = cross_attention_dim
        self.time_dim, temb = channels[0], 4 * channels[0]

        def resnet(cin: int, cout: int) -> ResnetBlock2D:
            return ResnetBlock2D(cin, cout, temb, groups)

        def attention(cout: int) -> Transformer2DModel:
            return Transformer2DModel(cout, ctx, heads, groups)

        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = channels[0]
        for i, kind in enumerate(down_block_types):
            cin, cout, last = cout, channels[i], i == len(channels) - 1
            cross = kind == "CrossAttnDownBlock2D"
            self.down_blocks.append(Block([resnet(cin if j == 0 else cout, cout) for j in range(layers_per_block)],
                                          [attention(cout) for _ in range(layers_per_block)] if cross else None,
                                          None if last else Downsample2D(cout), up=False))
        self.mid_block = Block([resnet(channels[-1], channels[-1]), resnet(channels[-1], channels[-1])],
                               [attention(channels[-1])], None, up=False)  # resnet, attention, resnet
        self.up_blocks = nn.ModuleList()
        reversed_channels, cout = channels[::-1], channels[-1]
        n = layers_per_block + 1
        for i, kind in enumerate(up_block_types):
            prev, cout = cout, reversed_channels[i]
            skip_in, last = reversed_channels[min(i + 1, len(channels) - 1)], i == len(channels) - 1
            cross = kind == "CrossAttnUpBlock2D"
            resnets = [resnet((prev if j == 0 else cout) + (skip_in if j == n - 1 else cout), cout) for j in range(n)]
            self.up_blocks.append(Block(resnets, [attention(cout) for _ in range(n)] if cross else None,
                                        None if last else Upsample2D(cout), up=True))
        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=1e-5)
        self.conv_out = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    def forward(self, sample: Tensor, timesteps: Tensor | int, encoder_hidden_states: Tensor) -> Tensor:
        N = sample.shape[0]
        timesteps = torch.as_tensor(timesteps, device=sample.device).reshape(-1).expand(N)
        temb = self.time_embedding(timestep_features(timesteps, self.time_dim).to(sample.dtype))
        ctx = encoder_hidden_states
        h = self.conv_in(sample)
        skips = [h]
        for block in self.down_blocks:
            for resnet, attention in block.layers():
                h = resnet(h, temb)
                h = h if attention is None else attention(h, ctx)
                skips.append(h)
            if (sampler := block.sampler()) is not None:
                h = sampler(h)
                skips.append(h)
        mid = self.mid_block
        h = mid.attentions[0](mid.resnets[0](h, temb), ctx)
        h = mid.resnets[1](h, temb)
        for block in self.up_blocks:
            for resnet, attention in block.layers():
                h = resnet(torch.cat([h, skips.pop()], dim=1), temb)
                h = h if attention is None else attention(h, ctx)
            if (sampler := block.sampler()) is not None:
                h = sampler(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))
