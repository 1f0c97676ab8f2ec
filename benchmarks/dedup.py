"""Near-duplicate search: is an image found by a lightly changed copy of itself?

    python -m benchmarks.dedup [--limit N] [--weights default]

Stores the Imagenette val images in a fresh table (on a temp folder), then queries with each
image JPEG re-encoded at quality 75 and resized to 0.75x. Reports recall@1 / @10 (the original
among the top 1 / 10 hits) and the class precision@10 of the hits. Writes results/dedup.json.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import mostore

ROOT = Path(__file__).resolve().parents[1]
NETTE = ROOT.parent / "shared" / "data" / "imagenette"


def variant(path: Path, quality: int = 75, scale: float = 0.75) -> bytes:
    img = Image.open(path).convert("RGB")
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=NETTE)
    ap.add_argument("--limit", type=int, default=None, help="use every n-th image to keep N images")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dedup.json")
    args = ap.parse_args(argv)

    rows = [r for r in csv.DictReader(open(args.data / "manifest.csv")) if r["split"] == "val"]
    if args.limit:
        rows = rows[:: max(1, len(rows) // args.limit)][: args.limit]
    files = [args.data / r["path"] for r in rows]
    labels = [r["class"] for r in rows]
    with tempfile.TemporaryDirectory() as tmp:
        db = mostore.connect(tmp, codec=mostore.Codec.load(args.weights))
        tbl = db.create_table("val")
        t0 = time.perf_counter()
        ids = []
        for start in range(0, len(files), 64):
            ids += tbl.add([str(f) for f in files[start : start + 64]],
                           metadata=[{"label": lab} for lab in labels[start : start + 64]])
        ingest_s = time.perf_counter() - t0
        hit1 = hit10 = 0
        precision = []
        t0 = time.perf_counter()
        for item_id, f, lab in zip(ids, files, labels):
            hits = tbl.search(variant(f)).limit(10).to_list()
            got = [h["id"] for h in hits]
            hit1 += bool(got) and got[0] == item_id
            hit10 += item_id in got
            others = [h for h in hits if h["id"] != item_id][:10]
            precision.append(np.mean([h["metadata"]["label"] == lab for h in others]) if others else 0.0)
        query_s = time.perf_counter() - t0
        stats = tbl.stats()
    n = len(files)
    result = {
        "images": n, "variant": "JPEG q75 + resize 0.75x",
        "recall_at_1": hit1 / n, "recall_at_10": hit10 / n, "class_precision_at_10": float(np.mean(precision)),
        "ingest_images_per_s": n / ingest_s, "queries_per_s": n / query_s,
        "bytes_per_item": stats["bytes_per_item"], "bpp": stats["bpp"], "embedder": stats["embedder"],
        "codec_id": stats["codec_id"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"{n} Imagenette val images, query = {result['variant']}")
    print(f"recall@1 {result['recall_at_1']:.4f}  recall@10 {result['recall_at_10']:.4f}  "
          f"class precision@10 {result['class_precision_at_10']:.3f}")
    print(f"ingest {result['ingest_images_per_s']:.1f} img/s, search by image {result['queries_per_s']:.1f} q/s, "
          f"{result['bytes_per_item']:.0f} bytes/item ({result['bpp']:.3f} bpp)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
