"""Image-quality and rate metrics shared by the benchmarks: PSNR, MS-SSIM, BD-rate."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

_MS_WEIGHTS = torch.tensor([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (RGB, 8-bit peak)."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_parts(x: torch.Tensor, y: torch.Tensor, win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    c = x.shape[1]
    wx = win.view(1, 1, 1, -1).repeat(c, 1, 1, 1)
    wy = win.view(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t):
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = ((2 * mx * my + c1) / (mx**2 + my**2 + c1)) * cs
    return ssim.mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Multi-scale SSIM (Wang et al. 2003), 5 scales, per channel then averaged; uint8 HxWx3."""
    x = torch.from_numpy(a.astype(np.float32)).permute(2, 0, 1)[None]
    y = torch.from_numpy(b.astype(np.float32)).permute(2, 0, 1)[None]
    win = _gauss()
    mcs = []
    for i in range(5):
        ssim, cs = _ssim_parts(x, y, win)
        if i < 4:
            mcs.append(torch.relu(cs))
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    vals = torch.stack(mcs + [torch.relu(ssim)], dim=0)  # (5, 1, C)
    return float(torch.prod(vals ** _MS_WEIGHTS.view(-1, 1, 1), dim=0).mean())


def bd_rate(ref_rate, ref_psnr, test_rate, test_psnr) -> float:
    """Bjøntegaard delta rate (%) of test vs reference: cubic fit of log-rate over PSNR,
    integrated over the overlapping PSNR range. Negative = fewer bits for the same quality."""
    ref_rate, ref_psnr, test_rate, test_psnr = map(np.asarray, (ref_rate, ref_psnr, test_rate, test_psnr))
    lo = max(ref_psnr.min(), test_psnr.min())
    hi = min(ref_psnr.max(), test_psnr.max())
    if hi <= lo:
        return float("nan")
    deg = min(3, len(ref_psnr) - 1, len(test_psnr) - 1)
    p_ref = np.polyfit(ref_psnr, np.log(ref_rate), deg)
    p_test = np.polyfit(test_psnr, np.log(test_rate), deg)
    int_ref = np.polyval(np.polyint(p_ref), hi) - np.polyval(np.polyint(p_ref), lo)
    int_test = np.polyval(np.polyint(p_test), hi) - np.polyval(np.polyint(p_test), lo)
    return float((np.exp((int_test - int_ref) / (hi - lo)) - 1) * 100)


def jpeg_at_psnr(image, target: float) -> bytes:
    """The smallest Pillow JPEG of ``image`` (PIL, RGB) whose PSNR reaches ``target`` (else quality 100)."""
    import io

    from PIL import Image

    arr = np.asarray(image)
    lo, hi, best, data = 1, 100, None, b""
    while lo <= hi:  # PSNR grows with quality: binary search for the smallest that reaches the target
        mid = (lo + hi) // 2
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=mid)
        data = buf.getvalue()
        if psnr(arr, np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))) >= target:
            best, hi = data, mid - 1
        else:
            lo = mid + 1
    return best if best is not None else data
