"""What the multitask fine-tuning (``python -m mostore.multitask``) does to both sides.

    python -m benchmarks.multitask --weights runs/multitask/codec.pt [--epochs 10]

Machine side: the same protocol for both codecs — render the train views (coded at a random
level) and the val images (default level) with the codec, train a fresh ``LatentClassifier``
on the latents (same views, epochs and seed), report top-1 on val and the bpp of the val
bytes. RD side: BD-rate (PSNR) of the fine-tuned codec against the shipped one on Kodak, bpp
from the bytes. Writes results/multitask.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.metrics import bd_rate
from benchmarks.rd import codec_point
from mostore import heads_train
from mostore.codec.model import Codec
from mostore.heads import fit_latent_classifier, predict

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def task_side(codec: Codec, weights: str, views: Path, epochs: int, seed: int) -> dict:
    q0 = codec.config.default_quality
    sets = heads_train.standard_sets(q0, codec.config.qualities)
    for name in ("train", f"val-q{q0}"):
        heads_train.build(sets[name], views, weights=weights)
    fields = ("latent", "label", "image", "bytes", "pixels")
    train, val = heads_train.load(views / "train", fields), heads_train.load(views / f"val-q{q0}", fields)
    model, acc = fit_latent_classifier(
        torch.from_numpy(train["latent"]), torch.from_numpy(train["label"]).long(), 10, epochs=epochs, seed=seed,
        groups=torch.from_numpy(train["image"]).long(),
    )
    top1 = float((predict(model, torch.from_numpy(val["latent"])).argmax(1).numpy() == val["label"]).mean())
    return {"codec_id": codec.id, "top1": top1, "val_bpp": float(np.mean(8 * val["bytes"] / val["pixels"]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True, help="the fine-tuned codec checkpoint")
    ap.add_argument("--baseline", default="default")
    ap.add_argument("--views", type=Path, default=ROOT / "runs" / "views", help="the baseline's view sets")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kodak", type=Path, default=ROOT.parent / "shared" / "data" / "kodak")
    ap.add_argument("--out", type=Path, default=RESULTS / "multitask.json")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    base, tuned = Codec.load(args.baseline), Codec.load(args.weights)
    result = {"epochs": args.epochs}
    for name, codec, weights, views in (("baseline", base, args.baseline, args.views),
                                        ("multitask", tuned, args.weights, args.views.with_name(f"views-{tuned.id}"))):
        result[name] = task_side(codec, weights, views, args.epochs, args.seed)
        print(f"{name:9} top-1 {result[name]['top1']:.4f} at {result[name]['val_bpp']:.3f} bpp (val)", flush=True)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(args.kodak.glob("*.png"))]
    curves = {name: [codec_point(c, images, q, 1) for q in range(1, c.config.qualities + 1)]
              for name, c in (("baseline", base), ("multitask", tuned))}
    for name, pts in curves.items():
        result[name]["kodak"] = [{k: p[k] for k in ("quality", "bpp", "psnr")} for p in pts]
    b, t = curves["baseline"], curves["multitask"]
    result["kodak_bd_rate_pct"] = bd_rate([p["bpp"] for p in b], [p["psnr"] for p in b],
                                          [p["bpp"] for p in t], [p["psnr"] for p in t])
    print(f"Kodak BD-rate of the multitask codec vs the baseline: {result['kodak_bd_rate_pct']:+.2f}%", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
