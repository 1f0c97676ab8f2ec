"""Multitask fine-tuning: rate + distortion + a classification loss on the latents (issue 4).

The seed's proposal: anchor a machine objective to the rate–distortion one, so the analysis
transform keeps what a classifier needs in the bits it spends::

    loss = Σ_q λ_q·MSE + bpp   (photo crops and Imagenette views, as in codec training)
         + β · CE(LatentClassifier(ŷ), class)   (Imagenette views; ŷ with straight-through rounding)

``--freeze-codec`` trains the head alone on the shipped codec (a control). The run ends with a
quick look (top-1 of the jointly trained head at every quality level); the measurement that
counts is ``benchmarks/multitask.py``: a fresh head trained the same way on each codec's latents,
and the Kodak RD curves of both codecs.

    python -m mostore.multitask --out runs/multitask --minutes 12 --beta 1 --head runs/latent_head.pt
    python -m benchmarks.multitask --weights runs/multitask/codec.pt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from mostore.codec.model import Codec, rd_loss, save_checkpoint
from mostore.codec.train import DEFAULT_DATA, default_sampler
from mostore.heads import LatentClassifier, prepare_latents
from mostore.heads_train import imagenette
from mostore.views import TRAINING, variant

VIEW = 224  # classification views are random-resized crops at this size (a multiple of 16 and 32)


class ViewSampler:
    """Batches of augmented Imagenette views (B, 3, 224, 224) in 0..255 with their labels."""

    def __init__(self, data: Path, seed: int):
        splits, _ = imagenette(data / "imagenette")
        self.rows = splits["train"]
        self.data = data
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ts = [], []
        for i in self.rng.choice(len(self.rows), n, replace=False):
            r = self.rows[i]
            image = variant(Image.open(self.data / "imagenette" / r["path"]).convert("RGB"), self.rng, TRAINING)
            xs.append(np.asarray(image.resize((VIEW, VIEW), Image.BILINEAR)))
            ts.append(int(r["label"]))
        return torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float(), torch.tensor(ts)


def pad64(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % 64, 0, -h % 64), mode="replicate")


def evaluate(codec: Codec, head: LatentClassifier, data: Path, every: int = 1) -> dict:
    """Top-1 of ``head`` on Imagenette val latents, and bpp from the bytes, at every quality."""
    splits, _ = imagenette(data / "imagenette")
    rows = splits["val"][:: max(1, every)]
    images = [Image.open(data / "imagenette" / r["path"]).convert("RGB") for r in rows]
    labels = np.array([int(r["label"]) for r in rows])
    out = {}
    head.eval()
    for q in range(1, codec.config.qualities + 1):
        bits, preds = 0, []
        for image in images:
            blob, y = codec.encode_with_latents(image, q)
            bits += 8 * len(blob)
            with torch.inference_mode():
                preds.append(int(head(prepare_latents(y)).argmax()))
        out[q] = {"top1": float((np.array(preds) == labels).mean()),
                  "bpp": bits / sum(im.width * im.height for im in images)}
        print(f"quality {q}: top-1 {out[q]['top1']:.4f} at {out[q]['bpp']:.3f} bpp", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--weights", default="default", help="codec to start from")
    ap.add_argument("--head", type=Path, help="LatentClassifier state to start from (else from scratch)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--beta", type=float, default=1.0, help="weight of the classification loss")
    ap.add_argument("--freeze-codec", action="store_true", help="the control: train the head only")
    ap.add_argument("--batch", type=int, default=8, help="Imagenette views per step (and as many photo crops)")
    ap.add_argument("--lr", type=float, default=5e-5, help="codec learning rate (the head uses 10x)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-every", type=int, default=1, help="evaluate on every k-th val image only")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    model = Codec.load(args.weights).model  # a name of shipped weights or a checkpoint path
    head = LatentClassifier(model.config.latent, 10)
    if args.head:
        head.load_state_dict(torch.load(args.head, map_location="cpu", weights_only=True))
    for p in model.parameters():
        p.requires_grad_(not args.freeze_codec)
    groups = [{"params": head.parameters(), "lr": 10 * args.lr}]
    if not args.freeze_codec:
        groups.append({"params": model.parameters(), "lr": args.lr})
    opt = torch.optim.Adam(groups)
    lambdas = torch.tensor(model.config.lambdas)
    views = ViewSampler(args.data, args.seed)
    crops = default_sampler(args.data, 128, args.seed)
    rng = np.random.default_rng(args.seed)
    log = open(args.out / "train.log", "a")
    t0, step, window = time.time(), 0, []
    while time.time() - t0 < args.minutes * 60:
        x, t = views.batch(args.batch)
        q = torch.from_numpy(rng.integers(0, model.config.qualities, size=args.batch))
        model.train(not args.freeze_codec)
        head.train()
        x = pad64(x)
        x_hat, y_lik, z_lik, y_hat = model(x, q, with_latents=True)
        ce = F.cross_entropy(head(prepare_latents(y_hat)), t, label_smoothing=0.1)
        if not args.freeze_codec:
            rd, _, _ = rd_loss(x, x_hat, y_lik, z_lik, lambdas[q])
            c = crops.batch(args.batch)
            qc = torch.from_numpy(rng.integers(0, model.config.qualities, size=args.batch))
            rd2, _, _ = rd_loss(c, *model(c, qc), lambdas[qc])
            loss = 0.5 * (rd + rd2) + args.beta * ce
        else:
            loss = ce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()) + list(head.parameters()), 1.0)
        opt.step()
        step += 1
        window.append((float(loss.detach()), float(ce.detach())))
        if step % 25 == 0:
            lo, c_ = np.mean(window, axis=0)
            window.clear()
            line = f"step {step} loss {lo:.4f} ce {c_:.4f} ({(time.time() - t0) / 60:.1f} min)"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()
    model.eval()
    save_checkpoint(model, args.out / "codec.pt", half=True, extra={"multitask_steps": step, "beta": args.beta})
    torch.save(head.state_dict(), args.out / "head.pt")
    codec = Codec.from_checkpoint(args.out / "codec.pt")
    result = {"steps": step, "beta": args.beta, "freeze_codec": args.freeze_codec, "codec_id": codec.id,
              "by_quality": evaluate(codec, head, args.data, args.eval_every)}
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
