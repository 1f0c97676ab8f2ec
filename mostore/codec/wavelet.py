"""A fixed, orthonormal Haar wavelet packet transform in torch.

One level maps every channel to four sub-bands at half resolution (LL, LH, HL, HH);
``levels`` levels map (B, C, H, W) to (B, C·4^J, H/2^J, W/2^J). Orthonormal, so the inverse
is the transpose and energy is kept: a PCA of the packet coefficients is a PCA of the
2^J × 2^J pixel blocks (as in WaLLoC's wavelet front end, Jacobellis & Yadwadkar 2024).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# rows: LL, LH, HL, HH over the 2x2 positions (0,0), (0,1), (1,0), (1,1)
_HAAR = 0.5 * torch.tensor(
    [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]
)


def _level(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    x = F.pixel_unshuffle(x, 2).view(b, c, 4, h // 2, w // 2)  # (B, C, 4 positions, H/2, W/2)
    x = torch.einsum("kp,bcphw->bckhw", _HAAR.to(x), x)
    return x.reshape(b, c * 4, h // 2, w // 2)


def _inverse_level(x: torch.Tensor) -> torch.Tensor:
    b, c4, h, w = x.shape
    x = x.view(b, c4 // 4, 4, h, w)
    x = torch.einsum("kp,bckhw->bcphw", _HAAR.to(x), x)
    return F.pixel_shuffle(x.reshape(b, c4, h, w), 2)


def packet(x: torch.Tensor, levels: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C·4^levels, H/2^levels, W/2^levels); H and W divisible by 2^levels."""
    for _ in range(levels):
        x = _level(x)
    return x


def inverse_packet(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Exact inverse of :func:`packet`."""
    for _ in range(levels):
        x = _inverse_level(x)
    return x
