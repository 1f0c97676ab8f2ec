"""Rate–distortion training of the codec, reproducible from the command line.

    python -m mostore.codec.train --out runs/codec --minutes 60            # start (or resume)
    python -m mostore.codec.train --out runs/codec --export mostore/codec/weights/default.pt

Random crops from ``../shared/data/photos`` and ``../shared/data/imagenette/train`` (never Kodak,
the evaluation set), seeded. Every step draws one quality level per sample and minimises
λ_q·MSE + bpp (Ballé et al.; CompressAI's λ convention). The linear paths start from a PCA of
wavelet blocks of the training data, which starts the codec near JPEG's quality.
A run folder holds ``last.pt`` (float32 weights + optimiser, for resuming) and ``train.log``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from mostore.codec.model import CodecConfig, CodecModel, load_model, rd_loss, save_checkpoint

DEFAULT_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


class CropSampler:
    """Random crops (B, 3, S, S) in 0..255 from a list of images, with flips and rescaling."""

    def __init__(self, images: list[np.ndarray], weights: list[float], size: int, seed: int):
        self.images = images
        p = np.asarray(weights, dtype=np.float64)
        self.p = p / p.sum()
        self.size = size
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> torch.Tensor:
        out = np.empty((n, self.size, self.size, 3), dtype=np.uint8)
        for i in range(n):
            img = self.images[self.rng.choice(len(self.images), p=self.p)]
            scale = self.rng.uniform(0.6, 1.0)
            h, w = img.shape[:2]
            if min(h, w) * scale >= self.size and scale < 0.98:
                nh, nw = int(h * scale), int(w * scale)
                img = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BICUBIC))
                h, w = nh, nw
            if min(h, w) < self.size:  # small image: pad by reflection
                img = np.pad(img, ((0, max(0, self.size - h)), (0, max(0, self.size - w)), (0, 0)), mode="reflect")
                h, w = img.shape[:2]
            y = self.rng.integers(0, h - self.size + 1)
            x = self.rng.integers(0, w - self.size + 1)
            crop = img[y : y + self.size, x : x + self.size]
            if self.rng.random() < 0.5:
                crop = crop[:, ::-1]
            if self.rng.random() < 0.5:
                crop = crop.transpose(1, 0, 2)
            out[i] = crop
        return torch.from_numpy(out).permute(0, 3, 1, 2).float()


def load_images(folder: Path, limit: int | None = None) -> list[np.ndarray]:
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        files = files[:limit]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def default_sampler(data: Path, size: int, seed: int, imagenette_limit: int | None = None) -> CropSampler:
    photos = load_images(data / "photos")
    nette = load_images(data / "imagenette" / "train", imagenette_limit)
    if not photos and not nette:
        raise SystemExit(f"no training images under {data}")
    # photos are few but clean and large: give them 60% of the crops
    weights = [0.6 / max(1, len(photos))] * len(photos) + [0.4 / max(1, len(nette))] * len(nette)
    return CropSampler(photos + nette, weights, size, seed)


def pca_init(model: CodecModel, sampler: CropSampler, crops: int = 512) -> None:
    """Initialise the linear paths with the top-M principal components of wavelet blocks."""
    levels, m = model.config.levels, model.config.latent
    coeffs = []
    for _ in range(crops // 32):
        x = sampler.batch(32)
        c = model.analysis.coefficients(x)  # (B, 768, h, w)
        coeffs.append(c.permute(0, 2, 3, 1).reshape(-1, c.shape[1]).double())
    c = torch.cat(coeffs)
    mean = c.mean(0)
    cov = torch.cov((c - mean).t())
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:m]
    basis = evecs[:, order].t().float()  # (M, 3·4^J)
    # deterministic sign: largest-magnitude entry positive
    signs = torch.sign(basis.gather(1, basis.abs().argmax(1, keepdim=True)))
    model.init_pca(basis * signs, mean.float())
    kept = float(evals[order].sum() / evals.sum())
    print(f"pca init: {m} of {c.shape[1]} components keep {kept:.4f} of the energy", flush=True)
    del levels


def train_steps(model: CodecModel, optimizer, sampler: CropSampler, steps: int, batch: int, rng: np.random.Generator):
    """Run ``steps`` optimisation steps; yields (loss, mse, bpp, quality indexes) per step."""
    lambdas_all = torch.tensor(model.config.lambdas)
    model.train()
    for _ in range(steps):
        x = sampler.batch(batch)
        q = torch.from_numpy(rng.integers(0, model.config.qualities, size=batch))
        x_hat, y_lik, z_lik = model(x, q)
        loss, mse, bpp = rd_loss(x, x_hat, y_lik, z_lik, lambdas_all[q])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        yield float(loss.detach()), float(mse.detach()), float(bpp.detach())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mostore train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/codec"), help="run folder (resumes from last.pt)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with photos/ and imagenette/")
    ap.add_argument("--steps", type=int, default=10**9, help="stop after this many steps in total")
    ap.add_argument("--minutes", type=float, default=60.0, help="stop after this much wall time")
    ap.add_argument("--quiet", action="store_true", help="no progress bar: print a line every 25 steps instead")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--final-lr-fraction", type=float, default=0.15, help="last part of --minutes at lr/10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=int, default=200)
    ap.add_argument("--export", type=Path, default=None, help="only write a float16 shipping checkpoint")
    ap.add_argument("--config", type=str, default="{}", help="CodecConfig overrides as JSON")
    ap.add_argument("--init", type=Path, default=None,
                    help="start a new run from these weights (e.g. mostore/codec/weights/default.pt)")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    last = args.out / "last.pt"

    if last.exists():
        blob = torch.load(last, map_location="cpu", weights_only=False)
        config = CodecConfig(**{**blob["config"], "lambdas": tuple(blob["config"]["lambdas"])})
        model = CodecModel(config)
        model.load_state_dict(blob["state"])
        step = blob["step"]
    elif args.init:
        model, _ = load_model(args.init)
        model.train()
        config, blob, step = model.config, None, 0
    else:
        blob, step = None, 0
        config = CodecConfig(**json.loads(args.config))
        model = CodecModel(config)

    if args.export:
        if blob is None:
            raise SystemExit(f"nothing to export: {last} does not exist")
        save_checkpoint(model, args.export, half=True, extra={"step": step})
        print(f"exported step {step} to {args.export} ({args.export.stat().st_size / 1e6:.2f} MB)")
        return 0

    sampler = default_sampler(args.data, args.crop, args.seed + step)
    if blob is None and not args.init:
        pca_init(model, sampler)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if blob is not None and "optimizer" in blob:
        optimizer.load_state_dict(blob["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = args.lr
    rng = np.random.default_rng(args.seed + 1 + step)

    log = open(args.out / "train.log", "a")
    t0 = time.time()
    window: list[tuple[float, float, float]] = []

    def save() -> None:
        tmp = last.with_suffix(".tmp")
        cfg = {**config.__dict__, "lambdas": list(config.lambdas)}
        torch.save({"config": cfg, "state": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step}, tmp)
        tmp.replace(last)

    # a step count when one was given, else the bar just counts (the run stops on --minutes)
    bar = tqdm(total=args.steps if args.steps < 10**9 else None, initial=step, unit="step", desc="train", file=sys.stderr, disable=args.quiet)
    for loss, mse, bpp in train_steps(model, optimizer, sampler, args.steps - step, args.batch, rng):
        step += 1
        bar.update(1)
        window.append((loss, mse, bpp))
        if step % 25 == 0:
            lo, ms, bp = (float(np.mean(v)) for v in zip(*window))
            window.clear()
            line = (
                f"step {step} loss {lo:.4f} psnr {10 * math.log10(255**2 / max(ms, 1e-9)):.2f} "
                f"bpp {bp:.3f} ({(time.time() - t0) / 60:.1f} min)"
            )
            bar.set_postfix_str(line.split(" ", 2)[2])
            if args.quiet:
                print(line, flush=True)
            log.write(line + "\n")
            log.flush()
        if step % args.save_every == 0:
            save()
        if time.time() - t0 > args.minutes * 60 * (1 - args.final_lr_fraction):
            for group in optimizer.param_groups:
                group["lr"] = args.lr / 10
        if time.time() - t0 > args.minutes * 60:
            break
    bar.close()
    save()
    print(f"saved step {step} to {last}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
