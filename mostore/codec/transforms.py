"""Learned analysis / synthesis transforms around a fixed wavelet front end.

Data flow (stride 16 with the default 4 wavelet levels, M latent channels)::

    x (B,3,H,W) ─► (x−128)/25 ─► Haar packet ─► c (B,768,H/16,W/16)
        analysis:  y = P·c  +  r_a(c)                       # P: PCA basis, r_a starts at 0
    y_hat (B,M,H/16,W/16)
        synthesis: ĉ = Pᵀ·y_hat + r_s(y_hat)                 # r_s starts at 0
                   ─► inverse packet, 2 levels ─► (B,48,H/4,W/4) ─► + refine(·) (deblocking)
                   ─► inverse packet, 2 levels ─► ×25+128 ─► x̂ (B,3,H,W)

The linear path initialised from a PCA of training blocks starts near JPEG's quality
(a Karhunen–Loève transform code); the nonlinear residuals learn what a linear code can't.
The encoder is kept light (it runs on every ingest); the decoder carries more capacity.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mostore.codec import wavelet

PIXEL_SHIFT = 128.0
PIXEL_SCALE = 25.0
#: predicted log-scales are clamped to this range (training and coding alike)
LOG_SCALE_RANGE = (-6.0, 8.0)


def _zero_last(seq: nn.Sequential) -> nn.Sequential:
    last = seq[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return seq


class Analysis(nn.Module):
    def __init__(self, levels: int, latent: int, hidden: int):
        super().__init__()
        self.levels = levels
        coeffs = 3 * 4**levels
        self._fused: tuple | None = None
        self.linear = nn.Conv2d(coeffs, latent, 1)
        self.residual = _zero_last(
            nn.Sequential(
                nn.Conv2d(coeffs, hidden, 1),
                nn.GELU(),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(hidden, latent, 1),
            )
        )

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B,3,H,W) in 0..255 -> normalised packet coefficients (B, 3·4^J, H/2^J, W/2^J)."""
        return wavelet.packet((x - PIXEL_SHIFT) / PIXEL_SCALE, self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled():
            return self._fused_forward(x)
        c = self.coefficients(x)
        return self.linear(c) + self.residual(c * 0.125)  # (B, M, H/16, W/16)

    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the wavelet, the scaling and both 1x1 input layers folded into one
        stride-2^J convolution on pixels (the same linear map, a third of the work)."""
        if self._fused is None:
            self._fused = self._fold()
        weight, bias, latent = self._fused
        h = F.conv2d(x, weight, bias, stride=2**self.levels)  # (B, M + hidden, H/16, W/16)
        y_lin, r = h[:, :latent], h[:, latent:]
        return y_lin + self.residual[1:](r)

    def train(self, mode: bool = True):
        self._fused = None  # weights may change: fold again when next needed
        return super().train(mode)

    @torch.no_grad()
    def _fold(self):
        s = 2**self.levels
        n = 3 * s * s
        # the packet transform of unit impulses gives the (affine) pixel -> coefficient map
        basis = wavelet.packet(torch.eye(n).view(n, 3, s, s) / PIXEL_SCALE, self.levels).view(n, n).t()  # (coeff, pixel)
        offset = wavelet.packet(torch.full((1, 3, s, s), -PIXEL_SHIFT / PIXEL_SCALE), self.levels).view(n)
        lin_w = self.linear.weight.view(self.linear.out_channels, n)
        res_w = self.residual[0].weight.view(self.residual[0].out_channels, n) * 0.125
        weight = torch.cat([lin_w @ basis, res_w @ basis]).view(-1, 3, s, s)
        bias = torch.cat([self.linear.bias + lin_w @ offset, self.residual[0].bias + res_w @ offset])
        return weight.contiguous(), bias.contiguous(), self.linear.out_channels


class Synthesis(nn.Module):
    def __init__(self, levels: int, latent: int, hidden: int, refine_hidden: int):
        super().__init__()
        self.levels = levels
        coeffs = 3 * 4**levels
        self.linear = nn.Conv2d(latent, coeffs, 1)
        self.residual = _zero_last(
            nn.Sequential(
                nn.Conv2d(latent, hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(hidden, hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(hidden, coeffs, 1),
            )
        )
        self.refine_levels = min(2, levels)
        fine = 3 * 4**self.refine_levels
        self.refine = _zero_last(
            nn.Sequential(
                nn.Conv2d(fine, refine_hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(refine_hidden, refine_hidden, 3, padding=1),
                nn.GELU(),
                nn.Conv2d(refine_hidden, fine, 3, padding=1),
            )
        )

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        c = self.linear(y_hat) + self.residual(y_hat)  # (B, 768, H/16, W/16)
        c = wavelet.inverse_packet(c, self.levels - self.refine_levels)  # (B, 48, H/4, W/4)
        c = c + self.refine(c)
        x = wavelet.inverse_packet(c, self.refine_levels)  # (B, 3, H, W)
        return x * PIXEL_SCALE + PIXEL_SHIFT


class HyperAnalysis(nn.Module):
    def __init__(self, latent: int, hidden: int, hyper: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(latent, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(hidden, hyper, 3, stride=2, padding=1),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)  # (B, Z, H/64, W/64)


class HyperSynthesis(nn.Module):
    """z_hat -> (mean, log-scale) of y, both (B, M, H/16, W/16), in the un-gained domain.

    Two heads: the mean head may run in float32 (a last-bit difference between encoder and
    decoder only nudges a reconstruction); the scale head decides the entropy coder's tables,
    which must match bit for bit, so it is kept small and run in float64 at coding time.
    """

    def __init__(self, latent: int, hidden: int, hyper: int, scale_hidden: int = 64):
        super().__init__()
        self.mean = _upsampling_head(hyper, hidden, hidden * 3 // 2, latent)
        self.scale = _upsampling_head(hyper, scale_hidden, scale_hidden, latent)

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(z_hat), self.scale(z_hat).clamp(*LOG_SCALE_RANGE)


def _upsampling_head(hyper: int, first: int, second: int, latent: int) -> nn.Sequential:
    """(B, Z, H/64, W/64) -> (B, M, H/16, W/16): two stride-2 transposed convs, then 1x1."""
    return nn.Sequential(
        nn.ConvTranspose2d(hyper, first, 4, stride=2, padding=1),
        nn.GELU(),
        nn.ConvTranspose2d(first, second, 4, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(second, latent, 1),
    )
