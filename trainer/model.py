"""The CLAP model: an audio encoder over the four views, a text encoder, projections, temperature.

Audio encoders take the views ``[B, 4, 1001, 64]`` (channel 0 global, then front / middle / back) and
the ``longer`` flags, and return one vector per clip:

- :class:`HTSATEncoder`: HTS-AT's Swin transformer (Chen et al., ICASSP 2022) as LAION-CLAP uses it:
  BatchNorm over the mel bins, the 1001 x 64 mel stretched to 1024 frames and folded into a
  256 x 256 "image" (four 256-frame rows), 4 x 4 patches with the fusion stem, Swin stages with
  shifted windows and patch merging, final LayerNorm and average pooling (LAION's ``embedding``).
  Left out: SpecAugment, mixup and the token-semantic classification head (not used by CLAP's loss).
- :class:`CNNEncoder`: a small strided CNN with the same fusion stem, for CPU runs.

Projections are LAION's two-layer MLPs (Linear, ReLU, Linear) into the joint space; the logit scale
is learnable from 1/0.07 and clamped to at most 100 after each step.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from clap_corpus.trainer.config import AudioConfig, ModelConfig
from clap_corpus.trainer.fusion import FusedStem
from clap_corpus.trainer.text import TextEncoder
from clap_corpus.transforms.views import MEL_BINS


class MelNorm(nn.Module):
    """BatchNorm over the 64 mel bins of ``[B, C, T, F]`` (LAION's ``bn0``)."""

    def __init__(self, affine: bool = True) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(MEL_BINS, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bins are the last, contiguous axis: a [N, 64] view normalises in place of memory order;
        # LAION's transpose-BatchNorm2d-transpose is the same arithmetic, 2-3x slower on CPU.
        return self.bn(x.reshape(-1, MEL_BINS)).view_as(x)


# ------------------------------------------------------------------------------------------------
# Small CNN


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class CNNEncoder(nn.Module):
    """Strided 3x3 conv blocks over (time, mel bin); mean over bins, then mean + max over time.

    Sized for CPUs: the stem takes (1001 frames, 64 bins) to (250, 32), a 2x2 max-pool to (125, 16),
    then each block halves the map again; most of the work is in the first layers, so they are thin.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        chans = cfg.shape["channels"]
        # No learnable gain here: it would make the full-resolution input need a gradient, which
        # doubled the CPU cost of a step; the stem's own weights do that scaling.
        self.norm = MelNorm(affine=False)
        self.stem = FusedStem(
            chans[0], kernel=(8, 3), stride=(4, 2), padding=(2, 1), fusion=cfg.fusion, time_dim=-2
        )
        self.stem_post = nn.Sequential(nn.BatchNorm2d(chans[0]), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.blocks = nn.Sequential(
            *(_conv_bn(cin, cout, stride=2) for cin, cout in itertools.pairwise(chans))
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_dim = chans[-1]

    def forward(self, views: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
        x = self.stem_post(self.stem(self.norm(views), longer))  # [B, C, T, F]
        x = self.blocks(x).mean(dim=3)  # [B, C, T']
        return self.dropout(x.mean(dim=-1) + x.amax(dim=-1))


# ------------------------------------------------------------------------------------------------
# HTS-AT (Swin)


def _window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    b = windows.shape[0] // ((h // ws) * (w // ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside ws x ws windows, with a learned relative position bias."""

    bias_index: torch.Tensor  # a buffer (register_buffer below): declared, as nn.Module's types can't see it

    def __init__(self, dim: int, ws: int, heads: int):
        super().__init__()
        self.ws, self.heads = ws, heads
        self.bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
        # Derived from ws alone: not part of the weights.
        self.register_buffer("bias_index", rel[..., 0] * (2 * ws - 1) + rel[..., 1], persistent=False)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, batch: int) -> torch.Tensor:
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [B*nW, heads, N, d]
        bias = self.bias_table[self.bias_index.view(-1)].view(n, n, self.heads).permute(2, 0, 1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        else:
            nw = mask.shape[0]
            shape = (batch, nw, self.heads, n, -1)
            attn_mask = (bias[None] + mask[:, None]).to(q.dtype)  # [nW, heads, N, N]
            out = F.scaled_dot_product_attention(
                q.reshape(shape), k.reshape(shape), v.reshape(shape), attn_mask=attn_mask
            ).reshape(bw, self.heads, n, -1)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, resolution: int, heads: int, ws: int, shift: int, mlp_ratio: float = 4.0):
        super().__init__()
        if resolution <= ws:
            ws, shift = resolution, 0  # Swin's rule: a window as large as the map needs no shift
        self.ws, self.shift, self.res = ws, shift, resolution
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, ws, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        mask = self._shift_mask() if shift else None
        self.register_buffer("attn_mask", mask, persistent=False)

    def _shift_mask(self) -> torch.Tensor:
        r, ws, s = self.res, self.ws, self.shift
        img = torch.zeros(1, r, r, 1)
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            for wsl in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
                img[:, hs, wsl, :] = cnt
                cnt += 1
        win = _window_partition(img, ws).squeeze(-1)  # [nW, N]
        diff = win[:, None, :] - win[:, :, None]
        return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        r = self.res
        h = self.norm1(x).view(b, r, r, c)
        if self.shift:
            h = torch.roll(h, (-self.shift, -self.shift), dims=(1, 2))
        h = self.attn(_window_partition(h, self.ws), self.attn_mask, b)
        h = _window_reverse(h, self.ws, r, r)
        if self.shift:
            h = torch.roll(h, (self.shift, self.shift), dims=(1, 2))
        x = x + h.reshape(b, n, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2 x 2 neighbouring tokens -> one token of twice the width."""

    def __init__(self, dim: int, resolution: int):
        super().__init__()
        self.res = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        x = x.view(b, self.res, self.res, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class HTSATEncoder(nn.Module):
    def __init__(self, cfg: AudioConfig):
        super().__init__()
        size = cfg.shape
        dim, depths, heads = size["embed_dim"], size["depths"], size["num_heads"]
        self.spec_size = cfg.spec_size
        self.freq_ratio = cfg.spec_size // MEL_BINS
        if self.freq_ratio * MEL_BINS != cfg.spec_size:
            raise ValueError(f"spec_size must be a multiple of {MEL_BINS}")
        self.norm0 = MelNorm()
        p = cfg.patch_size
        self.stem = FusedStem(dim, kernel=(p, p), stride=(p, p), fusion=cfg.fusion)
        self.patch_norm = nn.LayerNorm(dim)
        res = cfg.spec_size // p
        layers: list[nn.Module] = []
        for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
            d = dim * 2**i
            for j in range(depth):
                shift = cfg.window_size // 2 if j % 2 else 0
                layers.append(SwinBlock(d, res, h, cfg.window_size, shift))
            if i < len(depths) - 1:
                layers.append(PatchMerging(d, res))
                res //= 2
        self.layers = nn.Sequential(*layers)
        self.out_dim = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_dim)
        self.dropout = nn.Dropout(cfg.dropout)
        self.apply(_init_weights)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, 64] -> [B, C, 256, 256]: HTS-AT's ``reshape_wav2img`` (four 256-frame rows)."""
        target_t = self.spec_size * self.freq_ratio
        if x.shape[2] < target_t:
            x = F.interpolate(x, (target_t, x.shape[3]), mode="bicubic", align_corners=True)
        b, c, t, f = x.shape
        x = x.permute(0, 1, 3, 2).reshape(b, c, f, self.freq_ratio, t // self.freq_ratio)
        return x.permute(0, 1, 3, 2, 4).reshape(b, c, self.freq_ratio * f, t // self.freq_ratio)

    def forward(self, views: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
        x = self.fold(self.norm0(views))
        x = self.stem(x, longer)  # [B, C, 64, 64]
        x = self.patch_norm(x.flatten(2).transpose(1, 2))
        x = self.norm(self.layers(x))
        return self.dropout(x.mean(dim=1))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_audio_encoder(cfg: AudioConfig) -> HTSATEncoder | CNNEncoder:
    return HTSATEncoder(cfg) if cfg.encoder == "htsat" else CNNEncoder(cfg)


# ------------------------------------------------------------------------------------------------
# CLAP


def _mlp(din: int, dout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(din, dout), nn.ReLU(), nn.Linear(dout, dout))


class CLAP(nn.Module):
    def __init__(self, cfg: ModelConfig, text: TextEncoder):
        super().__init__()
        self.cfg = cfg
        self.audio = build_audio_encoder(cfg.audio)
        self.text = text
        self.audio_projection = _mlp(self.audio.out_dim, cfg.joint_dim)
        self.text_projection = _mlp(text.dim, cfg.joint_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def encode_audio(self, views: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.audio_projection(self.audio(views, longer)), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.text_projection(self.text(input_ids, attention_mask)), dim=-1)

    def forward(
        self, views: torch.Tensor, longer: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.encode_audio(views, longer),
            self.encode_text(input_ids, attention_mask),
            self.logit_scale.exp(),
        )

    @torch.no_grad()
    def clamp_logit_scale(self) -> None:
        self.logit_scale.clamp_(0.0, math.log(self.cfg.max_logit_scale))
