"""Rate–distortion and speed of the codec on Kodak, against Pillow JPEG and WebP in the same run.

    python -m benchmarks.rd [--kodak ../shared/data/kodak] [--weights default] [--repeats 3]

For each quality level: bpp counted from the bytes written, PSNR (RGB, 8-bit) and MS-SSIM,
averaged over the 24 images; the same for JPEG and WebP quality sweeps; BD-rate vs JPEG and
vs WebP; encode/decode throughput as ratios to Pillow JPEG measured on the same images, and
the cost of a ResNet-18-sized embedding forward pass (what a pixel-domain stack adds at ingest).
Writes benchmarks/results/rd.json and rd.png.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.metrics import bd_rate, ms_ssim, psnr
from mostore.codec.model import Codec

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
JPEG_Q = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
WEBP_Q = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
#: published Kodak points (CompressAI results JSONs; WaLLoC/LiVeAction evaluation notebooks)
PUBLISHED = {
    "bmshj2018-hyperprior": [(0.131, 27.58), (0.209, 29.20), (0.320, 30.97), (0.478, 32.84), (0.669, 34.53), (0.939, 36.74)],
    "bmshj2018-factorized": [(0.123, 26.91), (0.189, 28.22), (0.288, 29.62), (0.440, 31.28), (0.648, 32.96), (0.967, 35.38)],
    "WaLLoC f8c12": [(0.617, 30.56)],
}


def timed(fn, repeats: int) -> tuple[object, float]:
    """Result and median wall time of fn() over repeats."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def measure(images, q: int, encode, decode, repeats: int) -> dict:
    """Mean bpp / PSNR / MS-SSIM and summed median times of encode(img) -> bytes, decode(bytes) -> array."""
    bpps, psnrs, msssims, enc, dec = [], [], [], 0.0, 0.0
    for img in images:
        data, te = timed(lambda: encode(img), repeats)  # noqa: B023 (called at once)
        out, td = timed(lambda: decode(data), repeats)  # noqa: B023
        enc, dec = enc + te, dec + td
        bpps.append(8 * len(data) / (img.shape[0] * img.shape[1]))
        psnrs.append(psnr(img, out))
        msssims.append(ms_ssim(img, out))
    return {"quality": q, "bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs)),
            "ms_ssim": float(np.mean(msssims)), "encode_s": enc, "decode_s": dec}


def pillow_point(images, fmt: str, q: int, repeats: int) -> dict:
    def encode(img):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, quality=q)
        return buf.getvalue()

    def decode(data):
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    return measure(images, q, encode, decode, repeats)


def codec_point(codec: Codec, images, q: int, repeats: int) -> dict:
    for img in images:
        assert codec.encode(img, quality=q) == codec.encode(img, quality=q)  # deterministic
    return measure(images, q, lambda img: codec.encode(img, quality=q),
                   lambda data: np.asarray(codec.decode(data)), repeats)


def resnet18_like() -> torch.nn.Module:
    """A network with ResNet-18's layers and shapes (random weights: cost only)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.down = None if stride == 1 and cin == cout else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 512)]
    return nn.Sequential(*layers).eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="only the first N images (quick look)")
    ap.add_argument("--out", type=Path, default=RESULTS / "rd.json")
    args = ap.parse_args(argv)

    files = sorted(args.kodak.glob("*.png"))[: args.limit]
    if not files:
        raise SystemExit(f"no Kodak images under {args.kodak}")
    images = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    pixels = sum(i.shape[0] * i.shape[1] for i in images)
    codec = Codec.load(args.weights)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    ours = [codec_point(codec, images, q, args.repeats) for q in range(1, codec.config.qualities + 1)]
    jpeg = [pillow_point(images, "JPEG", q, args.repeats) for q in JPEG_Q]
    webp = [pillow_point(images, "WEBP", q, args.repeats) for q in WEBP_Q]

    def curve(points):
        return [p["bpp"] for p in points], [p["psnr"] for p in points]

    bd_jpeg = bd_rate(*curve(jpeg), *curve(ours))
    bd_webp = bd_rate(*curve(webp), *curve(ours))
    hp = PUBLISHED["bmshj2018-hyperprior"]
    bd_hyper = bd_rate([p[0] for p in hp], [p[1] for p in hp], *curve(ours))
    bd_webp_vs_jpeg = bd_rate(*curve(jpeg), *curve(webp))

    jpeg_enc = statistics.median(p["encode_s"] for p in jpeg) / len(images)
    jpeg_dec = statistics.median(p["decode_s"] for p in jpeg) / len(images)
    our_enc = statistics.median(p["encode_s"] for p in ours) / len(images)
    our_dec = statistics.median(p["decode_s"] for p in ours) / len(images)
    net = resnet18_like()
    x = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        net(x)
        _, resnet_s = timed(lambda: net(x), args.repeats + 2)

    speed = {
        "jpeg_encode_ms_per_image": 1e3 * jpeg_enc,
        "jpeg_decode_ms_per_image": 1e3 * jpeg_dec,
        "mostore_encode_ms_per_image": 1e3 * our_enc,
        "mostore_decode_ms_per_image": 1e3 * our_dec,
        "mostore_encode_mpx_s": pixels / len(images) / our_enc / 1e6,
        "mostore_decode_mpx_s": pixels / len(images) / our_dec / 1e6,
        "encode_ratio_vs_jpeg": jpeg_enc / our_enc,
        "decode_ratio_vs_jpeg": jpeg_dec / our_dec,
        "resnet18_224_forward_ms": 1e3 * resnet_s,
        "jpeg_plus_resnet18_ms": 1e3 * (jpeg_enc + resnet_s),
    }
    result = {
        "images": len(images),
        "codec_id": codec.id,
        "machine": f"{platform.machine()} {platform.processor() or ''} torch threads {torch.get_num_threads()}".strip(),
        "mostore": ours, "jpeg": jpeg, "webp": webp,
        "bd_rate_vs_jpeg_pct": bd_jpeg, "bd_rate_vs_webp_pct": bd_webp,
        "bd_rate_vs_published_hyperprior_pct": bd_hyper, "bd_rate_webp_vs_jpeg_pct": bd_webp_vs_jpeg,
        "speed": speed, "published": PUBLISHED,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))

    print(f"Kodak, {len(images)} images; codec {codec.id}")
    print(f"{'codec':8} {'q':>3} {'bpp':>7} {'PSNR':>7} {'MS-SSIM':>8} {'enc ms':>8} {'dec ms':>8}")
    for name, pts in (("mostore", ours), ("jpeg", jpeg), ("webp", webp)):
        for p in pts:
            print(f"{name:8} {p['quality']:>3} {p['bpp']:7.3f} {p['psnr']:7.2f} {p['ms_ssim']:8.4f} "
                  f"{1e3 * p['encode_s'] / len(images):8.1f} {1e3 * p['decode_s'] / len(images):8.1f}")
    print(f"BD-rate vs JPEG {bd_jpeg:+.1f}%  vs WebP {bd_webp:+.1f}%  vs published hyperprior {bd_hyper:+.1f}%"
          f"  (WebP vs JPEG {bd_webp_vs_jpeg:+.1f}%)")
    print(f"encode {speed['mostore_encode_ms_per_image']:.1f} ms/image ({speed['encode_ratio_vs_jpeg']:.3f}x JPEG's "
          f"{speed['jpeg_encode_ms_per_image']:.2f} ms); decode {speed['mostore_decode_ms_per_image']:.1f} ms "
          f"({speed['decode_ratio_vs_jpeg']:.3f}x JPEG); ResNet-18 224px forward {speed['resnet18_224_forward_ms']:.1f} ms")
    plot(result, args.out.with_suffix(".png"))
    return 0


def plot(result: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, style in (("mostore", "o-"), ("jpeg", "s--"), ("webp", "^--")):
        pts = [p for p in result[name] if p["bpp"] <= 2.0]
        ax.plot([p["bpp"] for p in pts], [p["psnr"] for p in pts], style, label=name if name == "mostore" else f"Pillow {name.upper()}")
    for name, pts in result["published"].items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "x:", label=f"{name} (published)")
    ax.set_xlabel("bits per pixel (from bytes written)")
    ax.set_ylabel("PSNR RGB (dB)")
    ax.set_title(f"Kodak (24 images): BD-rate vs JPEG {result['bd_rate_vs_jpeg_pct']:+.1f}%")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
