"""Training data and training loops for the machine heads (``mostore.heads``).

A *view set* is a folder of shards, each a set of ``.npy`` arrays with one row per view of an
image (see ``mostore.views``): ``latent`` (N, M, 14, 14) float16, ``original`` and ``decoded``
(N, 3, 112, 112) uint8, ``image`` (index into the image list), ``label``, ``quality``, ``bytes``,
``pixels``. Shards are written atomically and skipped when present, so an interrupted build
resumes. Views are seeded per image: the same command builds the same set.

    python -m mostore.heads_train views --set train --out runs/views   # then: embed, see below
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mostore.views import DUPLICATE, TRAINING, VariantSpec, ViewTensors, variant

NETTE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette"
SHARD = 500
FIELDS = ("latent", "original", "decoded", "image", "label", "quality", "bytes", "pixels")


@dataclass(frozen=True)
class ViewSet:
    """What to render: ``views`` per image from ``split``, at ``quality`` (0: uniform over levels)."""

    name: str
    split: str
    views: int
    spec: VariantSpec | None  # None: the image as it is
    quality: int
    decoded: bool = True
    clean_first: bool = False  # view 0 of each image is the image as it is


def standard_sets(default_quality: int, qualities: int) -> dict[str, ViewSet]:
    sets = {
        "train": ViewSet("train", "train", 4, TRAINING, 0, clean_first=True),
        "dup": ViewSet("dup", "val", 1, DUPLICATE, default_quality, decoded=False),
    }
    for q in range(1, qualities + 1):
        sets[f"val-q{q}"] = ViewSet(f"val-q{q}", "val", 1, None, q)
        # the same train views coded at one level: what a table of that quality holds
        sets[f"train-q{q}"] = ViewSet(f"train-q{q}", "train", 4, TRAINING, q, clean_first=True)
    return sets


def imagenette(data: Path = NETTE) -> tuple[dict[str, list[dict]], list[str]]:
    rows = list(csv.DictReader(open(data / "manifest.csv")))
    label_of = {r["class"]: int(r["label"]) for r in rows}
    classes = sorted(label_of, key=label_of.__getitem__)
    return {s: [r for r in rows if r["split"] == s] for s in ("train", "val")}, classes


def _render_shard(job) -> str:
    weights, data, vs, rows, first, out, seed = job
    torch.set_num_threads(1)
    from mostore.codec.model import Codec

    codec = Codec.load(weights)
    tensors = ViewTensors(codec, decoded=vs.decoded)
    cols: dict[str, list] = {k: [] for k in FIELDS}
    for i, r in enumerate(rows, start=first):
        image = Image.open(data / r["path"]).convert("RGB")
        rng = np.random.default_rng([seed, i])
        for v in range(vs.views):
            view = image if vs.spec is None or (vs.clean_first and v == 0) else variant(image, rng, vs.spec)
            q = vs.quality or int(rng.integers(1, codec.config.qualities + 1))
            t = tensors(view, q)
            for k in ("latent", "original", "decoded", "bytes", "pixels"):
                if k in t:
                    cols[k].append(t[k])
            cols["image"].append(i)
            cols["label"].append(int(r["label"]))
            cols["quality"].append(q)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for k, v in cols.items():
        if v:
            np.save(tmp / f"{k}.npy", np.stack(v) if isinstance(v[0], np.ndarray) else np.asarray(v))
    os.replace(tmp, out)
    return out.name


def build(vs: ViewSet, out: Path, *, weights: str = "default", data: Path = NETTE, workers: int = 2,
          seed: int = 0) -> Path:
    """Render a view set into ``out/vs.name`` (resumes: finished shards are kept)."""
    splits, _ = imagenette(data)
    rows = splits[vs.split]
    folder = out / vs.name
    folder.mkdir(parents=True, exist_ok=True)
    jobs = []
    for first in range(0, len(rows), SHARD):
        shard = folder / f"{first:06d}"
        if not shard.is_dir():
            jobs.append((weights, data, vs, rows[first:first + SHARD], first, shard, seed))
    t = time.perf_counter()
    with get_context("spawn").Pool(workers) as pool:
        for name in pool.imap_unordered(_render_shard, jobs):
            print(f"{vs.name}/{name} done ({time.perf_counter() - t:.0f} s)", flush=True)
    return folder


def load(folder: Path, fields: tuple[str, ...] = FIELDS) -> dict[str, np.ndarray]:
    """Concatenate a view set's shards (fields that the set has)."""
    shards = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))
    if not shards:
        raise FileNotFoundError(f"no view shards in {folder}")
    out = {}
    for k in fields:
        parts = [np.load(s / f"{k}.npy") for s in shards if (s / f"{k}.npy").is_file()]
        if parts:
            out[k] = np.concatenate(parts)
    return out


def supcon_loss(z: torch.Tensor, images: torch.Tensor, labels: torch.Tensor, *, tau: float,
                alpha: float) -> torch.Tensor:
    """Instance contrastive loss (SimCLR's NT-Xent: the other views of the same image are the
    positives) plus ``alpha`` × the supervised contrastive loss (Khosla et al. 2020: every item of
    the same class is a positive; rows with label < 0 have none). z: (N, D) unit vectors."""
    n = len(z)
    eye = torch.eye(n, dtype=torch.bool)
    sim = (z @ z.t() / tau).masked_fill(eye, float("-inf"))
    log_prob = (sim - torch.logsumexp(sim, dim=1, keepdim=True)).masked_fill(eye, 0.0)
    same_image = (images[:, None] == images[None]) & ~eye
    loss = -(log_prob * same_image).sum(1) / same_image.sum(1).clamp(min=1)
    if alpha:
        same_class = (labels[:, None] == labels[None]) & (labels[:, None] >= 0) & ~eye
        has = same_class.any(1)
        sup = -(log_prob * same_class).sum(1)[has] / same_class.sum(1)[has]
        loss = loss.mean() + alpha * (sup.mean() if len(sup) else 0.0)
        return loss
    return loss.mean()


def fit_embedder(latents: torch.Tensor, labels: torch.Tensor, groups: torch.Tensor, *, dim: int, epochs: int,
                 alpha: float = 1.0, tau: float = 0.1, batch: int = 128, lr: float = 3e-3, seed: int = 0,
                 log=print):
    """Train a ``LatentEmbedder`` on views (N, M, 14, 14) of images (``groups``): each step takes
    ``batch`` images and two of their views."""
    from mostore.heads import LatentEmbedder, _shift, _view_lists

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = LatentEmbedder(latents.shape[1], dim)
    model.trunk.normalise_from(latents[torch.randperm(len(latents), generator=gen)[:2048]])
    views = [v for v in _view_lists(groups) if len(v) >= 2]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = max(1, len(views) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps, pct_start=0.2)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(views), generator=gen)
        total = 0.0
        for s in range(steps):
            rows = []
            for i in order[s * batch : (s + 1) * batch].tolist():
                pick = torch.randperm(len(views[i]), generator=gen)[:2]
                rows.append(views[i][pick])
            rows = torch.cat(rows)
            z = model(_shift(latents[rows].float(), gen))
            loss = supcon_loss(z, groups[rows], labels[rows], tau=tau, alpha=alpha)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach())
        log(f"epoch {epoch + 1}/{epochs} loss {total / steps:.3f}")
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Render view sets / train the shipped embedding head")
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("views", help="render view sets of Imagenette")
    v.add_argument("--set", action="append", required=True, help="train, dup, val-q1..val-q7 (repeatable)")
    v.add_argument("--out", type=Path, default=Path("runs/views"))
    v.add_argument("--weights", default="default")
    v.add_argument("--data", type=Path, default=NETTE)
    v.add_argument("--workers", type=int, default=2)
    v.add_argument("--no-decoded", action="store_true", help="latents and original pixels only (faster)")
    e = sub.add_parser("embed", help="train the search embedding on the train views; write it for the codec")
    e.add_argument("--views", type=Path, default=Path("runs/views"))
    e.add_argument("--weights", default="default")
    e.add_argument("--epochs", type=int, default=30)
    e.add_argument("--alpha", type=float, default=1.0, help="weight of the class (supervised) term")
    e.add_argument("--dim", type=int, default=192)
    e.add_argument("--out", type=Path, help="default: the shipped file for this codec's id")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.cmd == "embed":
        from mostore.codec.model import Codec
        from mostore.heads import embedder_path

        codec = Codec.load(args.weights)
        build(standard_sets(codec.config.default_quality, codec.config.qualities)["train"], args.views,
              weights=args.weights)
        d = load(args.views / "train", ("latent", "label", "image"))
        t = time.perf_counter()
        model = fit_embedder(torch.from_numpy(d["latent"]), torch.from_numpy(d["label"]).long(),
                             torch.from_numpy(d["image"]).long(), dim=args.dim, epochs=args.epochs, alpha=args.alpha)
        out = args.out or embedder_path(codec.id)
        out.parent.mkdir(parents=True, exist_ok=True)
        info = {"arch": model.arch, "dim": args.dim, "codec_id": codec.id, "epochs": args.epochs, "alpha": args.alpha,
                "train_views": int(len(d["latent"])), "train_s": round(time.perf_counter() - t, 1)}
        state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
        torch.save({"info": info, "state": state}, out)
        print(f"wrote {out}: {info}")
    if args.cmd == "views":
        from mostore.codec.model import Codec

        config = Codec.load(args.weights).config
        sets = standard_sets(config.default_quality, config.qualities)
        for name in args.set:
            vs = replace(sets[name], decoded=False) if args.no_decoded else sets[name]
            build(vs, args.out, weights=args.weights, data=args.data, workers=args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
