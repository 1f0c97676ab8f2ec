"""Machine perception from latents vs from pixels (issue 4), on Imagenette (10 classes).

    python -m benchmarks.tasks [--epochs 30] [--seeds 3] [--views runs/views] [--parts retrieval]

1. **Classification.** The same head (``mostore.heads.LatentClassifier``: 39 M MACs) is trained
   with the same views, epochs and seeds on (a) mostore latents ŷ (entropy decoding only, 192×14×14),
   (b) pixels decoded from mostore and (c) the original pixels; both pixel inputs are 112×112
   folded 8×8 into 192×14×14, the latents' tensor size (the fair "same input size" comparison).
   Train views are augmented (crop, resize, tone, flip, JPEG) and coded at a random quality level;
   top-1 on val (3,925) at every quality level, against bits per pixel counted from the bytes.
   The cost of each path (MACs and measured time per image from the stored bytes) as ratios.
2. **Near-duplicate retrieval and class consistency** with the store's embedding
   (``mostore.heads.load_embedder``): the val images (clean, default quality) are the database,
   one random variant of each (crop ≤20%, resize 0.5–1×, tone ±15%, flip, JPEG q30–90) the
   query, embedded as a search by image does (``LearnedEmbedding.query``: a query smaller than
   224 px also through an upscaled copy) and from its own latents alone: recall@1 / @10;
   class precision@10 of clean val queries (self excluded). Baselines:
   the fixed pooling (``PooledEmbedding``) and an 8×8 RGB thumbnail (192 values, the same
   dimension as the learned embedding).
3. **Storage** per item: mostore bytes vs a JPEG at the same PSNR plus a float32 embedding.
4. **The store's own classifier** (part ``store``): the train images ingested into a real table
   with their class, ``Table.fit_classifier`` with its defaults, ``Table.classify`` of each val file.

Writes results/tasks.json and results/tasks.png (top-1 vs bpp).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import faiss
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

import mostore
from benchmarks.metrics import jpeg_at_psnr, psnr
from mostore import heads_train
from mostore.heads import (
    LatentClassifier,
    PooledEmbedding,
    fit_latent_classifier,
    load_embedder,
    predict,
    prepare_latents,
)
from mostore.views import DUPLICATE, fold_pixels, pixel_tensor, variant

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("latent", "decoded", "original")
PARTS = ("classification", "retrieval", "storage", "store")


def conv_macs(module: torch.nn.Module, *inputs) -> int:
    """Multiply-adds of one forward pass, counted from the convolutions and linears that ran."""
    total = 0

    def hook(m, args, out):
        nonlocal total
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            k = m.weight[0].numel() if isinstance(m, torch.nn.Conv2d) else m.weight[:, 0].numel()
            total += out.numel() * k
        elif isinstance(m, torch.nn.Linear):
            total += out.numel() * m.in_features

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    try:
        with torch.inference_mode():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def inputs(d: dict, kind: str) -> torch.Tensor:
    x = torch.from_numpy(d[kind])
    return x if kind == "latent" else fold_pixels(x).half()


def classification(args, codec, train, vals) -> tuple[dict, dict]:
    """Each input kind trained once per seed (``args.seeds`` of them, from ``args.seed``) with the
    same head, views and epochs; top-1 per quality level is the mean over seeds, and each seed's
    top-1 at the default quality is kept, so kinds can be compared seed by seed."""
    labels = torch.from_numpy(train["label"]).long()
    groups = torch.from_numpy(train["image"]).long()
    q0 = codec.config.default_quality
    seeds = list(range(args.seed, args.seed + args.seeds))
    out, models, correct = {}, {}, {}
    for kind in KINDS:
        t = time.perf_counter()
        x = inputs(train, kind)
        # the original pixels do not depend on the quality level
        val_x = {q: inputs(v, kind) for q, v in vals.items() if kind != "original" or q == q0}
        runs = []
        for seed in seeds:
            model, _ = fit_latent_classifier(
                x, labels, 10, epochs=args.epochs, groups=groups, seed=seed, width=args.width,
                val_latents=val_x[q0].float(), val_targets=torch.from_numpy(vals[q0]["label"]).long(),
                log=lambda m, k=kind, s=seed: print(f"  {k} seed {s}: {m}", flush=True),
            )
            per_q = {}
            for q, xv in val_x.items():
                v = vals[q]
                pred = predict(model, xv).argmax(1).numpy()
                if q == q0:
                    correct.setdefault(kind, []).append(pred == v["label"])
                per_q[q] = {"top1": float((pred == v["label"]).mean()),
                            "bpp": float(np.mean(8 * v["bytes"] / v["pixels"]))}
            runs.append(per_q)
            models.setdefault(kind, model)  # the first seed's model is timed and saved
            print(f"{kind:9} seed {seed}: top-1 {per_q[q0]['top1']:.4f} at quality {q0}", flush=True)
        by_q = {q: {"top1": float(np.mean([r[q]["top1"] for r in runs])), "bpp": runs[0][q]["bpp"]} for q in runs[0]}
        out[kind] = {"train_s": round(time.perf_counter() - t, 1), "by_quality": by_q, "top1": by_q[q0]["top1"],
                     "seeds": seeds, "top1_by_seed": [r[q0]["top1"] for r in runs]}
        print(f"{kind:9} top-1 {by_q[q0]['top1']:.4f} (mean of {len(seeds)} seeds) ({out[kind]['train_s']:.0f} s)",
              flush=True)
    # paired by seed and image: val images only the latent head got right, and only the pixel head got right
    for kind in ("decoded", "original"):
        pairs = [(int((a & ~b).sum()), int((b & ~a).sum())) for a, b in zip(correct["latent"], correct[kind])]
        out["latent"][f"vs_{kind}_by_seed"] = [{"only_latent": x, f"only_{kind}": y} for x, y in pairs]
        print(f"latent vs {kind}: images only the latent head got right / only the {kind} head got right, by seed: "
              + ", ".join(f"{x}/{y}" for x, y in pairs), flush=True)
    return out, models


def path_costs(codec, models, files: list[Path], q: int) -> dict:
    """Per-image time and MACs from the stored bytes to class logits, for each path."""
    blobs = [codec.encode(Image.open(f).convert("RGB"), q) for f in files]
    jpegs = [f.read_bytes() for f in files]
    steps = {
        "latent": lambda i: models["latent"](LatentClassifier.prepare(codec.latents(blobs[i]))),
        "decoded": lambda i: models["decoded"](
            fold_pixels(torch.from_numpy(pixel_tensor(codec.decode(blobs[i])))[None])),
        "original": lambda i: models["original"](
            fold_pixels(torch.from_numpy(pixel_tensor(Image.open(io.BytesIO(jpegs[i])).convert("RGB")))[None])),
    }
    times = {k: [] for k in KINDS}
    with torch.inference_mode():
        for _ in range(3):  # interleaved repeats; medians
            for k in KINDS:
                t = time.perf_counter()
                for i in range(len(files)):
                    steps[k](i)
                times[k].append((time.perf_counter() - t) / len(files))
    y = codec.latents(blobs[0])
    head = conv_macs(models["latent"], LatentClassifier.prepare(y))
    synth = conv_macs(codec.model.synthesis, y)
    out = {k: {"ms_per_image": 1e3 * float(np.median(v))} for k, v in times.items()}
    out["latent"]["macs"] = head
    out["decoded"]["macs"] = head + synth
    out["original"]["macs"] = head
    out["decoded"]["synthesis_macs"] = synth
    for k in KINDS:
        out[k]["time_vs_decoded"] = out[k]["ms_per_image"] / out["decoded"]["ms_per_image"]
    return out


def knn(db: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(np.ascontiguousarray(db, dtype=np.float32))
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)[1]


def retrieval_scores(db: np.ndarray, dup: np.ndarray, labels: np.ndarray) -> dict:
    """recall@1/@10 of variant queries (query i's original is db row i); class precision@10."""
    hits = knn(db, dup, 10)
    target = np.arange(len(db))[:, None]
    own = knn(db, db, 11)
    neighbours = np.array([[j for j in row if j != i][:10] for i, row in enumerate(own)])
    return {
        "recall@1": float((hits[:, :1] == target).any(1).mean()),
        "recall@10": float((hits == target).any(1).mean()),
        "class_precision@10": float((labels[neighbours] == labels[:, None]).mean()),
    }


def thumbnail_embedding(pixels: np.ndarray) -> np.ndarray:
    """8×8 RGB thumbnails (192 values), mean-removed and L2-normalised."""
    x = F.adaptive_avg_pool2d(torch.from_numpy(pixels).float(), 8).reshape(len(pixels), -1)
    x = x - x.mean(dim=1, keepdim=True)
    return F.normalize(x, dim=1).numpy()


def embed_all(embedder, latents: np.ndarray) -> np.ndarray:
    return np.concatenate([embedder.batch(list(torch.from_numpy(b).float())) for b in np.array_split(latents, 32)])


def duplicate_queries(data: Path, rows: list[dict], seed: int = 0):
    """The variant images of the ``dup`` view set again (same seeds), as a user would query with them."""
    for i, r in enumerate(rows):
        image = Image.open(data / r["path"]).convert("RGB")
        yield variant(image, np.random.default_rng([seed, i]), DUPLICATE)


def retrieval(codec, clean: dict, dup: dict, queries) -> dict:
    """``queries``: the variant images behind ``dup``, embedded the way a search by image does."""
    learned = load_embedder(codec)
    pooled = PooledEmbedding(codec.config.latent)
    out = {}
    db = embed_all(learned, clean["latent"])
    t = time.perf_counter()
    vectors, first = [], True
    for v in queries:
        if first:  # the re-rendered variant is the one in the view set
            y = prepare_latents(codec.encode_with_latents(v, codec.config.default_quality)[1])[0].half().numpy()
            if np.mean(y != dup["latent"][0]) > 0.01:  # (thread counts may flip a rare rounding)
                raise RuntimeError("the variant images do not match the dup view set: rebuild runs/views/dup")
            first = False
        vectors.append(learned.query(codec, v, codec.config.default_quality))
    query_s = (time.perf_counter() - t) / len(vectors)
    out["store"] = {"embedder": learned.id, "dim": learned.dim, "ms_per_query": 1e3 * query_s,
                    **retrieval_scores(db, np.stack(vectors), clean["label"])}
    out["own_latents"] = {"embedder": learned.id, "dim": learned.dim,
                          **retrieval_scores(db, embed_all(learned, dup["latent"]), clean["label"])}
    if learned.id != pooled.id:
        out["pooled"] = {"embedder": pooled.id, "dim": pooled.dim, **retrieval_scores(
            embed_all(pooled, clean["latent"]), embed_all(pooled, dup["latent"]), clean["label"])}
    out["thumbnail"] = {"embedder": "rgb-8x8", "dim": 192, **retrieval_scores(
        thumbnail_embedding(clean["original"]), thumbnail_embedding(dup["original"]), clean["label"])}
    for name, r in out.items():
        print(f"{name:11} ({r['embedder']}, {r['dim']}-d): recall@1 {r['recall@1']:.4f}  recall@10 "
              f"{r['recall@10']:.4f}  class precision@10 {r['class_precision@10']:.4f}", flush=True)
    return out


def store_classifier(codec, data: Path, splits: dict) -> dict:
    """What a user of the store gets: the train images ingested into a real table with their
    class as metadata, ``fit_classifier`` with its defaults (trunk from the shipped embedding,
    20% of the rows held out), then ``classify`` of each val image file through the API."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tbl = mostore.connect(Path(tmp) / "db", codec=codec).create_table("train")
        rows = splits["train"]
        t = time.perf_counter()
        for start in range(0, len(rows), 256):
            chunk = rows[start : start + 256]
            tbl.add([str(data / r["path"]) for r in chunk], metadata=[{"label": r["class"]} for r in chunk])
        ingest_s = time.perf_counter() - t
        t = time.perf_counter()
        info = tbl.fit_classifier("nette", label="label")
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        hits = [tbl.classify(str(data / r["path"]), classifier="nette")["label"] == r["class"] for r in splits["val"]]
        classify_s = (time.perf_counter() - t) / len(hits)
    out = {"train_items": len(rows), "n_train": info["n_train"], "n_val": info["n_val"], "epochs": info["epochs"],
           "pretrained_trunk": info["pretrained_trunk"], "held_out_accuracy": info["val_accuracy"],
           "val_images": len(hits), "val_top1": float(np.mean(hits)), "ingest_s": round(ingest_s, 1),
           "fit_s": round(fit_s, 1), "classify_ms_per_image": 1e3 * classify_s}
    print(f"store     fit_classifier on {info['n_train']} rows ({fit_s:.0f} s): held-out {info['val_accuracy']:.4f}, "
          f"classify(val image file) top-1 {out['val_top1']:.4f} ({out['classify_ms_per_image']:.1f} ms/image)",
          flush=True)
    return out


def storage(codec, files: list[Path], q: int, dim: int) -> dict:
    """mostore bytes vs the smallest Pillow JPEG with at least the same PSNR, + a float32 vector."""
    ours, jpeg, ps = [], [], []
    for f in files:
        image = Image.open(f).convert("RGB")
        data = codec.encode(image, q)
        target = psnr(np.asarray(image), np.asarray(codec.decode(data)))
        ours.append(len(data))
        ps.append(target)
        jpeg.append(len(jpeg_at_psnr(image, target)))
    return {"images": len(files), "psnr": float(np.mean(ps)), "mostore_bytes": float(np.mean(ours)),
            "jpeg_bytes": float(np.mean(jpeg)), "embedding_bytes": 4 * dim,
            "jpeg_plus_embedding_bytes": float(np.mean(jpeg)) + 4 * dim,
            "ratio": float(np.mean(ours)) / (float(np.mean(jpeg)) + 4 * dim)}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, style in (("latent", "o-"), ("decoded", "s--")):
        pts = sorted((v["bpp"], v["top1"]) for v in result["classification"][kind]["by_quality"].values())
        label = "head on latents (no decode)" if kind == "latent" else "head on decoded pixels"
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.axhline(result["classification"]["original"]["top1"], color="grey", ls=":", label="head on original pixels")
    ax.set_xlabel("bits per pixel (from the bytes)")
    ax.set_ylabel("top-1 on Imagenette val")
    ax.set_title("Classification vs rate, same head, same input size")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views", type=Path, default=ROOT / "runs" / "views")
    ap.add_argument("--data", type=Path, default=heads_train.NETTE)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0, help="first seed")
    ap.add_argument("--seeds", type=int, default=1, help="train each classifier with this many seeds")
    ap.add_argument("--width", type=int, default=64, help="width of the head (LatentNet)")
    ap.add_argument("--weights", default="default")
    ap.add_argument("--timing-images", type=int, default=100)
    ap.add_argument("--storage-images", type=int, default=200)
    ap.add_argument("--out", type=Path, default=RESULTS / "tasks.json")
    ap.add_argument("--parts", default=",".join(PARTS),
                    help="run only these parts (comma-separated); the others are kept from --out")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    codec = mostore.Codec.load(args.weights)
    q0, nq = codec.config.default_quality, codec.config.qualities
    sets = heads_train.standard_sets(q0, nq)
    for name in ["train", f"val-q{q0}", "dup"] + [f"val-q{q}" for q in range(1, nq + 1) if q != q0]:
        heads_train.build(sets[name], args.views, weights=args.weights, data=args.data)
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        ap.error(f"--parts: choose from {','.join(PARTS)}")
    train = heads_train.load(args.views / "train") if "classification" in parts else None
    vals = {q: heads_train.load(args.views / f"val-q{q}") for q in range(1, nq + 1)}
    dup = heads_train.load(args.views / "dup")
    splits, _ = heads_train.imagenette(args.data)
    val_files = [args.data / r["path"] for r in splits["val"]]

    def spread(n: int) -> list[Path]:
        return [val_files[i] for i in np.linspace(0, len(val_files) - 1, n).round().astype(int)]

    if parts != set(PARTS) and not args.out.is_file():
        ap.error(f"--parts runs some parts and keeps the others from {args.out}, which does not exist")
    result = json.loads(args.out.read_text()) if parts != set(PARTS) else {}  # other parts: kept from --out
    result.update({"codec_id": codec.id, "default_quality": q0, "val_images": int(len(vals[q0]["label"]))})
    if "classification" in parts:
        result.update({"epochs": args.epochs, "seed": args.seed, "width": args.width,
                       "train_views": int(len(train["label"])), "train_images": int(len(np.unique(train["image"])))})
        result["classification"], models = classification(args, codec, train, vals)
        # the latent head is the start of the multitask fine-tuning (python -m mostore.multitask --head)
        torch.save(models["latent"].state_dict(), args.views.parent / "latent_head.pt")
        result["cost"] = path_costs(codec, models, spread(args.timing_images), q0)
        for k, v in result["cost"].items():
            print(f"{k:9} {v['ms_per_image']:.2f} ms/image ({v['time_vs_decoded']:.2f}x decoded), "
                  f"{v['macs'] / 1e6:.0f} M MACs", flush=True)
    if "retrieval" in parts:
        queries = duplicate_queries(args.data, splits["val"])
        result["retrieval"] = retrieval(codec, vals[q0], dup, queries)
    if "store" in parts:
        result["store_classifier"] = store_classifier(codec, args.data, splits)
    if "storage" in parts:
        result["storage"] = storage(codec, spread(args.storage_images), q0, load_embedder(codec).dim)
        s = result["storage"]
        print(f"storage at {s['psnr']:.2f} dB: mostore {s['mostore_bytes']:.0f} B vs JPEG {s['jpeg_bytes']:.0f} B + "
              f"embedding {s['embedding_bytes']} B = {s['ratio']:.2f}x", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    plot(result, args.out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
