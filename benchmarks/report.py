"""Print the README's benchmark tables (markdown) from benchmarks/results/*.json.

    python -m benchmarks.report
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def rd_table(r: dict) -> str:
    lines = [
        f"**Rate–distortion on Kodak** (`python -m benchmarks.rd`; {r['images']} images, codec `{r['codec_id']}`; "
        "bpp from the bytes written). Plot: `benchmarks/results/rd.png`.",
        "",
        "| quality | bpp | PSNR (dB) | MS-SSIM | encode ms/image | decode ms/image |",
        "|---|---|---|---|---|---|",
    ]
    n = r["images"]
    for p in r["mostore"]:
        lines.append(f"| {p['quality']} | {p['bpp']:.3f} | {p['psnr']:.2f} | {p['ms_ssim']:.4f} | "
                     f"{1e3 * p['encode_s'] / n:.1f} | {1e3 * p['decode_s'] / n:.1f} |")
    s = r["speed"]
    lines += [
        "",
        f"* BD-rate (PSNR) vs Pillow JPEG: **{r['bd_rate_vs_jpeg_pct']:+.1f}%**; vs Pillow WebP: "
        f"**{r['bd_rate_vs_webp_pct']:+.1f}%**; vs published bmshj2018-hyperprior: {r['bd_rate_vs_published_hyperprior_pct']:+.1f}% "
        f"(WebP vs JPEG in the same run: {r['bd_rate_webp_vs_jpeg_pct']:+.1f}%).",
        f"* Encode {s['mostore_encode_ms_per_image']:.1f} ms per Kodak image ({s['mostore_encode_mpx_s']:.1f} Mpx/s), "
        f"**{s['encode_ratio_vs_jpeg']:.3f}×** Pillow JPEG's {s['jpeg_encode_ms_per_image']:.2f} ms measured in the same run; "
        f"decode {s['mostore_decode_ms_per_image']:.1f} ms ({s['decode_ratio_vs_jpeg']:.3f}× JPEG's {s['jpeg_decode_ms_per_image']:.2f} ms).",
        f"* What mostore's one encoder replaces at ingest: JPEG encode + a ResNet-18-sized embedding forward pass at "
        f"224×224 ({s['resnet18_224_forward_ms']:.1f} ms on its own, here).",
    ]
    return "\n".join(lines)


def dedup_table(r: dict) -> str:
    return "\n".join([
        f"**Near-duplicate search** (`python -m benchmarks.dedup`): {r['images']} Imagenette val images stored, "
        f"each queried by a copy {r['variant']}.",
        "",
        "| recall@1 | recall@10 | class precision@10 | bytes/item | ingest img/s | search-by-image q/s |",
        "|---|---|---|---|---|---|",
        f"| {r['recall_at_1']:.4f} | {r['recall_at_10']:.4f} | {r['class_precision_at_10']:.3f} | "
        f"{r['bytes_per_item']:.0f} ({r['bpp']:.3f} bpp) | {r['ingest_images_per_s']:.1f} | {r['queries_per_s']:.1f} |",
    ])


def tasks_table(r: dict) -> str:
    res = r["results"]
    return "\n".join([
        f"**Classification, latents vs pixels** (`python -m benchmarks.tasks --train {r['train_images']} "
        f"--val {r['val_images']} --epochs {r['epochs']}`; Imagenette, 10 classes; the same "
        f"{r['head_macs'] / 1e6:.1f} M-MAC head on 192×14×14 inputs).",
        "",
        "| input | top-1 (val) | ms/image to produce the input |",
        "|---|---|---|",
        *(f"| {name} | {res[key]['top1']:.3f} | {res[key]['input_ms_per_image']:.1f} |"
          for key, name in (("latent", "mostore latents (entropy decode only)"),
                            ("decoded", "pixels decoded from mostore, 112×112"),
                            ("original", "original pixels, 112×112"))),
    ])


def main() -> int:
    parts = []
    for name, fn in (("rd.json", rd_table), ("dedup.json", dedup_table), ("tasks.json", tasks_table)):
        path = RESULTS / name
        if path.exists():
            parts.append(fn(json.loads(path.read_text())))
    print("\n\n".join(parts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
