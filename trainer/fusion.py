"""Attentional feature fusion of the four views, as LAION-CLAP's "aff_2d" does it.

The global view (channel 0: the whole clip squeezed to 10 s) goes through the encoder's first layer;
for clips marked ``longer`` the three local views (front, middle, back crops at full resolution) go
through a sibling layer with three times the kernel and stride along time, are laid side by side
along time, and are merged with the global features by AFF (Dai et al., "Attentional Feature Fusion",
WACV 2021): ``2 * x * w + 2 * y * (1 - w)``, with ``w`` a sigmoid of a local (1x1 conv) plus a
global (pooled) attention branch over ``x + y``. Clips of at most 10 s have four equal views and skip
the local branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AFF(nn.Module):
    """Attentional feature fusion of two same-shaped maps ``x`` and ``residual``, 1-D or 2-D."""

    def __init__(self, channels: int, r: int = 4, dims: int = 2):
        super().__init__()
        if dims not in (1, 2):
            raise ValueError("dims must be 1 or 2")
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        norm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        pool = nn.AdaptiveAvgPool1d if dims == 1 else nn.AdaptiveAvgPool2d
        inter = max(1, channels // r)

        def branch(pooled: bool) -> nn.Sequential:
            layers: list[nn.Module] = [pool(1)] if pooled else []
            layers += [conv(channels, inter, 1), norm(inter), nn.ReLU(inplace=True), conv(inter, channels, 1)]
            layers.append(norm(channels))
            return nn.Sequential(*layers)

        self.local_att = branch(pooled=False)
        self.global_att = branch(pooled=True)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        xa = x + residual
        single = xa.shape[0] == 1 and self.training
        if single:
            # BatchNorm after the global pool sees one value per channel: duplicate, as LAION does.
            xa = torch.cat([xa, xa], dim=0)
        w = torch.sigmoid(self.local_att(xa) + self.global_att(xa))
        if single:
            w = w[:1]
        return 2 * x * w + 2 * residual * (1 - w)


class FusedStem(nn.Module):
    """First layer over the views ``[B, 4, H, W]`` -> ``[B, C, H', W']``; time runs along ``time_dim``.

    Without fusion only the global view is used. With fusion, ``longer`` rows get their three local
    views fused in (see the module docstring).
    """

    def __init__(
        self,
        out_channels: int,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        padding: tuple[int, int] = (0, 0),
        fusion: bool = True,
        time_dim: int = -1,
    ):
        super().__init__()
        if time_dim not in (-1, -2):
            raise ValueError("time_dim must be -1 (W) or -2 (H)")
        self.fusion, self.time_dim = fusion, time_dim
        self.proj = nn.Conv2d(1, out_channels, kernel, stride, padding)
        if fusion:
            t = 1 if time_dim == -1 else 0
            lk, ls = list(kernel), list(stride)
            lk[t], ls[t] = kernel[t] * 3, stride[t] * 3
            self.local_proj = nn.Conv2d(1, out_channels, (lk[0], lk[1]), (ls[0], ls[1]), padding)
            self.aff = AFF(out_channels, dims=2)

    def forward(self, views: torch.Tensor, longer: torch.Tensor) -> torch.Tensor:
        g = self.proj(views[:, :1])
        if not self.fusion:
            return g
        longer = longer.to(views.device)
        if not self.training:
            # Inference runs the local branch on every row and keeps it for the longer ones: a clip's
            # arithmetic then has the batch's shape whatever the other clips are (a CPU kernel's
            # summation order depends on the shapes it is given), so its embedding does not depend
            # on how it was batched. Training keeps to the longer rows: the gradient is the same.
            return torch.where(longer.view(-1, 1, 1, 1), self._fuse(g, views), g)
        idx = torch.nonzero(longer, as_tuple=False).flatten()
        if idx.numel() == 0:
            # Keep the fusion weights in the graph with zero gradient: DDP wants a gradient for
            # every parameter on every rank, whatever the batch holds.
            return g + 0.0 * sum(p.sum() for p in self._local_params())
        fused = self._fuse(g.index_select(0, idx), views.index_select(0, idx))
        return g.index_copy(0, idx, fused)

    def _fuse(self, g: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        """The global features ``g`` of these rows fused with their three local views."""
        local = views[:, 1:]
        n, k, h, w = local.shape
        feats = self.local_proj(local.reshape(n * k, 1, h, w))
        c, fh, fw = feats.shape[1:]
        feats = feats.view(n, k, c, fh, fw)
        if self.time_dim == -1:
            feats = feats.permute(0, 2, 3, 1, 4).reshape(n, c, fh, k * fw)  # the three side by side
        else:
            feats = feats.permute(0, 2, 1, 3, 4).reshape(n, c, k * fh, fw)
        # Three local maps in a row may miss or overshoot the global length by a few frames.
        length, have = g.shape[self.time_dim], feats.shape[self.time_dim]
        if have < length:
            feats = F.pad(feats, (0, length - have) if self.time_dim == -1 else (0, 0, 0, length - have))
        else:
            feats = feats.narrow(self.time_dim, 0, length)
        return self.aff(g, feats)

    def _local_params(self) -> list[nn.Parameter]:
        return [*self.local_proj.parameters(), *self.aff.parameters()]
