"""Classification from latents vs from pixels, with the same head at the same input size.

    python -m benchmarks.tasks [--train 5000] [--val 3925] [--epochs 30]

On Imagenette (10 classes): the same small CNN (``mostore.heads.LatentClassifier``) is trained on
(1) mostore latents ŷ (192×14×14 after entropy decoding only), (2) pixels decoded from mostore,
and (3) the original pixels; both pixel inputs are downscaled to 112×112 and folded 8×8 into
192×14×14, the latent's tensor size (the fair comparison WaLLoC makes). Reports top-1 on val and
the per-image cost of producing each input, as ratios. Writes results/tasks.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import mostore
from mostore.heads import LatentClassifier, fit_latent_classifier

ROOT = Path(__file__).resolve().parents[1]
NETTE = ROOT.parent / "shared" / "data" / "imagenette"


def pixels_as_tensor(image: Image.Image) -> torch.Tensor:
    """112×112 RGB folded 8×8 into (192, 14, 14): the latent's tensor size."""
    arr = np.asarray(image.convert("RGB").resize((112, 112), Image.BILINEAR), dtype=np.float32)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None] / 255.0 - 0.5
    return F.pixel_unshuffle(x, 8)[0]


def pick(rows: list[dict], n: int) -> list[dict]:
    """n rows spread evenly over the (class-sorted) list."""
    if n >= len(rows):
        return rows
    return [rows[i] for i in np.linspace(0, len(rows) - 1, n).round().astype(int)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=NETTE)
    ap.add_argument("--train", type=int, default=5000)
    ap.add_argument("--val", type=int, default=3925)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--weights", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tasks.json")
    args = ap.parse_args(argv)

    manifest = list(csv.DictReader(open(args.data / "manifest.csv")))
    train = pick([r for r in manifest if r["split"] == "train"], args.train)
    val = pick([r for r in manifest if r["split"] == "val"], args.val)
    classes = sorted({r["class"] for r in manifest})
    codec = mostore.Codec.load(args.weights)

    inputs: dict[str, dict[str, list]] = {k: {"train": [], "val": []} for k in ("latent", "decoded", "original")}
    cost = {"latent": 0.0, "decoded": 0.0, "original": 0.0}
    nbytes = []
    for split, rows in (("train", train), ("val", val)):
        for r in rows:
            image = Image.open(args.data / r["path"]).convert("RGB")
            data = codec.encode(image)
            nbytes.append(len(data))
            t = time.perf_counter()
            y = LatentClassifier.prepare(codec.latents(data))[0]
            cost["latent"] += time.perf_counter() - t
            t = time.perf_counter()
            dec = pixels_as_tensor(codec.decode(data))
            cost["decoded"] += time.perf_counter() - t
            t = time.perf_counter()
            orig = pixels_as_tensor(Image.open(args.data / r["path"]))
            cost["original"] += time.perf_counter() - t
            for key, value in (("latent", y), ("decoded", dec), ("original", orig)):
                inputs[key][split].append(value.half())
    t_train = torch.tensor([classes.index(r["class"]) for r in train])
    t_val = torch.tensor([classes.index(r["class"]) for r in val])

    results = {}
    for key in ("latent", "decoded", "original"):
        x_train = torch.stack(inputs[key]["train"]).float()
        x_val = torch.stack(inputs[key]["val"]).float()
        t = time.perf_counter()
        model, acc = fit_latent_classifier(x_train, t_train, len(classes), epochs=args.epochs,
                                           val_latents=x_val, val_targets=t_val)
        results[key] = {"top1": acc, "train_s": time.perf_counter() - t,
                        "input_ms_per_image": 1e3 * cost[key] / (len(train) + len(val))}
        print(f"{key:9} top-1 {acc:.4f}  input {results[key]['input_ms_per_image']:.1f} ms/image", flush=True)
    head_macs = sum(m.weight.numel() * (14 * 14 if m.stride == (1, 1) else 7 * 7)
                    for m in model.body if isinstance(m, torch.nn.Conv2d))
    out = {
        "train_images": len(train), "val_images": len(val), "epochs": args.epochs, "codec_id": codec.id,
        "bytes_per_item": float(np.mean(nbytes)), "head_macs": head_macs, "results": results,
        "latent_input_cost_vs_decoded": results["latent"]["input_ms_per_image"] / results["decoded"]["input_ms_per_image"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"head: {head_macs / 1e6:.1f} M MACs per image; latent input costs "
          f"{out['latent_input_cost_vs_decoded']:.2f}x the decoded-pixel input")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
