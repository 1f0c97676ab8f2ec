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

from mostore.codec import wavelet

PIXEL_SHIFT = 128.0
PIXEL_SCALE = 25.0


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
        c = self.coefficients(x)
        return self.linear(c) + self.residual(c * 0.125)  # (B, M, H/16, W/16)


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
    """z_hat -> (mean, log-scale) of y, both (B, M, H/16, W/16), in the un-gained domain."""

    def __init__(self, latent: int, hidden: int, hyper: int):
        super().__init__()
        wide = hidden * 3 // 2
        self.net = nn.Sequential(
            nn.ConvTranspose2d(hyper, hidden, 4, stride=2, padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(hidden, wide, 4, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(wide, 2 * latent, 1),
        )

    def forward(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_scale = self.net(z_hat).chunk(2, dim=1)
        return mean, log_scale.clamp(-6.0, 8.0)
