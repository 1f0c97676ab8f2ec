"""Ingest: mostore against the stack a user would run instead, in the same process.

    python -m benchmarks.ingest [--limit 1000] [--rss 10000,100000]

**Speed** on Imagenette val files (read file -> ... -> stored and searchable):

* mostore: ``Table.add`` in batches (decode input, analysis transform, entropy coding, learned
  embedding head, Lance append, FAISS update and save).
* baseline "JPEG + ResNet-18 + Lance": decode input, Pillow JPEG q85 encode, a network with
  ResNet-18's layers at 224x224 (in batches of 8, its fastest here; its cost does not depend on
  its weights), one Lance
  append of the JPEG bytes and the 512-d float32 vectors.
* baseline "JPEG + Lance": the same without the network (storage only, no search).

Both run with the same torch threads, alternately, ``--rounds`` times; the best round of each
counts. CPU time is split by stage by timing the functions each stage calls.

**Latency and storage** (100 items): reconstruct and classify per item from the store, against
decoding the JPEG of equal PSNR (and decoding it + ResNet-18); on-disk bytes of the table (Lance
files + index) per item against that JPEG + a float32 embedding.

**Memory**: a child process ingests ``--rss`` items (random crops, flips and re-tones of the
Imagenette images at 96x96) in batches of 64 and reports its peak RSS at each count. Writes
results/ingest.json.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageEnhance

from benchmarks.rd import resnet18_like

ROOT = Path(__file__).resolve().parents[1]
NETTE = ROOT.parent / "shared" / "data" / "imagenette"
RESULTS = ROOT / "benchmarks" / "results"
BATCH = 64


class Stages:
    """Accumulated wall time per stage, from wrapped functions (single-threaded callers)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, owner, attr: str, stage: str) -> None:
        original = getattr(owner, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0

        setattr(owner, attr, timed)
        self._undo.append((owner, attr, original))

    def restore(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()


@contextmanager
def mostore_stages(stages: Stages, table):
    import lancedb.table

    from mostore import data
    from mostore.codec import entropy
    from mostore.index import VectorIndex

    stages.wrap(data, "load_image", "decode input")
    stages.wrap(table.codec, "encode_with_latents", "codec (transform + entropy coding)")
    stages.wrap(entropy, "encode_y", "entropy coding")
    stages.wrap(entropy.ZCoder, "encode", "entropy coding")
    stages.wrap(table.embedder, "batch", "embedding head")
    stages.wrap(lancedb.table.LanceTable, "add", "Lance append")
    stages.wrap(VectorIndex, "add", "FAISS add")
    stages.wrap(VectorIndex, "save", "FAISS save")
    try:
        yield
    finally:
        stages.restore()
        # the transform is the codec's time less the entropy coding inside it
        codec = stages.seconds.pop("codec (transform + entropy coding)", 0.0)
        stages.seconds["analysis transform"] = codec - stages.seconds.get("entropy coding", 0.0)


def run_mostore(files: list[Path], workdir: Path) -> dict:
    import mostore

    tbl = mostore.connect(workdir / "mostore").create_table("ingest")
    stages = Stages()
    t0, c0 = time.perf_counter(), time.process_time()
    with mostore_stages(stages, tbl):
        for i in range(0, len(files), BATCH):
            tbl.add([str(f) for f in files[i : i + BATCH]])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stats = tbl.stats()
    return {"wall_s": wall, "cpu_s": cpu, "images_per_s": len(files) / wall, "stages_s": stages.seconds,
            "bytes_per_item": stats["bytes_per_item"], "rows": stats["rows"]}


def run_baseline(files: list[Path], workdir: Path, net) -> dict:
    import lancedb

    db = lancedb.connect(str(workdir / "baseline"))
    name = "baseline"  # one per (fresh) folder
    stages = {"decode input": 0.0, "JPEG q85 encode": 0.0, "embedding network": 0.0, "Lance append": 0.0}
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    table, nbytes = None, 0
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(files), BATCH):
        s = time.perf_counter()
        images = [Image.open(f).convert("RGB") for f in files[i : i + BATCH]]
        for im in images:
            im.load()
        stages["decode input"] += time.perf_counter() - s
        s = time.perf_counter()
        jpegs = []
        for im in images:
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=85)
            jpegs.append(buf.getvalue())
        stages["JPEG q85 encode"] += time.perf_counter() - s
        s = time.perf_counter()
        vecs = None
        if net is not None:
            x = torch.stack([
                (torch.from_numpy(np.asarray(im.resize((224, 224), Image.BILINEAR))).permute(2, 0, 1).float() / 255
                 - mean) / std for im in images])
            with torch.inference_mode():  # sub-batches of 8: the fastest size for this network here
                vecs = torch.nn.functional.normalize(torch.cat([net(c) for c in x.split(8)]), dim=1).numpy()
        stages["embedding network"] += time.perf_counter() - s
        s = time.perf_counter()
        cols = {"id": pa.array(np.arange(i, i + len(jpegs)), pa.int64()), "jpeg": pa.array(jpegs, pa.binary())}
        if vecs is not None:
            cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), vecs.shape[1])
        batch = pa.table(cols)
        if table is None:
            table = db.create_table(name, batch)
        else:
            table.add(batch)
        stages["Lance append"] += time.perf_counter() - s
        nbytes += sum(len(j) for j in jpegs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if net is None:
        stages.pop("embedding network")
    return {"wall_s": wall, "cpu_s": cpu, "images_per_s": len(files) / wall, "stages_s": stages,
            "bytes_per_item": nbytes / len(files) + (512 * 4 if net is not None else 0)}


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def latency_and_storage(files: list[Path], workdir: Path, net, n: int = 100) -> dict:
    """Per item: reconstruct and classify from the store vs decoding the JPEG of equal PSNR;
    on-disk bytes of the table (Lance files + index) vs that JPEG + a float32 embedding."""
    import mostore
    from benchmarks.metrics import jpeg_at_psnr, psnr

    files = files[:: max(1, len(files) // n)][:n]  # every class
    db = mostore.connect(workdir / "latency")
    tbl = db.create_table("t")
    ids = tbl.add([str(f) for f in files], metadata=[{"label": f.parent.name} for f in files])
    tbl.fit_classifier("c", "label", epochs=3, val_fraction=0.0)
    tbl.optimize()
    jpegs, ps = [], []
    for item_id, f in zip(ids, files):
        image = Image.open(f).convert("RGB")
        target = psnr(np.asarray(image), np.asarray(tbl.reconstruct(item_id).convert("RGB")))
        jpegs.append(jpeg_at_psnr(image, target))
        ps.append(target)

    def per_item(fn) -> float:
        t0 = time.perf_counter()
        for i in range(len(ids)):
            fn(i)
        return 1e3 * (time.perf_counter() - t0) / len(ids)

    def jpeg_classify(i):
        im = Image.open(io.BytesIO(jpegs[i])).convert("RGB").resize((224, 224), Image.BILINEAR)
        with torch.inference_mode():
            net(torch.from_numpy(np.asarray(im)).permute(2, 0, 1).float()[None] / 255)

    tbl.classify(ids[0], classifier="c")  # load the head
    times = {"reconstruct": [], "classify": [], "jpeg_decode": [], "jpeg_decode_resnet18": []}
    for _ in range(3):  # interleaved repeats, medians
        times["reconstruct"].append(per_item(lambda i: tbl.reconstruct(ids[i])))
        times["classify"].append(per_item(lambda i: tbl.classify(ids[i], classifier="c")))
        times["jpeg_decode"].append(per_item(lambda i: Image.open(io.BytesIO(jpegs[i])).convert("RGB")))
        times["jpeg_decode_resnet18"].append(per_item(jpeg_classify))
    ms = {k: float(np.median(v)) for k, v in times.items()}
    table_bytes = folder_bytes(db.path / "t.lance") + folder_bytes(db.path / "_mostore" / "t") - folder_bytes(
        db.path / "_mostore" / "t" / "classifiers")
    jpeg_b = float(np.mean([len(j) for j in jpegs]))
    return {
        "items": len(ids), "psnr": float(np.mean(ps)), "ms": ms,
        "reconstruct_vs_jpeg_decode": ms["reconstruct"] / ms["jpeg_decode"],
        "classify_vs_jpeg_decode": ms["classify"] / ms["jpeg_decode"],
        "classify_vs_jpeg_decode_resnet18": ms["classify"] / ms["jpeg_decode_resnet18"],
        "table_bytes_per_item": table_bytes / len(ids), "latent_bytes_per_item": tbl.stats()["bytes_per_item"],
        "jpeg_equal_psnr_bytes": jpeg_b, "jpeg_plus_float32_embedding_bytes": jpeg_b + 4 * tbl.embedder.dim,
        "table_vs_jpeg_plus_embedding": (table_bytes / len(ids)) / (jpeg_b + 4 * tbl.embedder.dim),
    }


def augmented(files: list[Path], n: int, seed: int = 0):
    """n synthesised 96x96 images: random crops, flips and tone changes of the given files."""
    rng = random.Random(seed)
    for _ in range(n):
        im = Image.open(rng.choice(files)).convert("RGB")
        s = rng.randint(96, min(im.size))
        x, y = rng.randint(0, im.width - s), rng.randint(0, im.height - s)
        im = im.crop((x, y, x + s, y + s)).resize((96, 96), Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        yield ImageEnhance.Brightness(im).enhance(rng.uniform(0.8, 1.2))


def rss_child(data: Path, checkpoints: list[int], out: Path) -> None:
    """Ingest max(checkpoints) synthesised items; record peak RSS (MiB) at each checkpoint."""
    import mostore

    torch.set_num_threads(2)
    files = sorted((data / "train").rglob("*.JPEG"))
    with tempfile.TemporaryDirectory() as tmp:
        tbl = mostore.connect(Path(tmp) / "db").create_table("rss")
        done, marks, t0 = 0, {}, time.perf_counter()
        pending = []
        for im in augmented(files, max(checkpoints)):
            pending.append(np.asarray(im))
            if len(pending) == BATCH or done + len(pending) == max(checkpoints):
                tbl.add(pending)
                done += len(pending)
                pending = []
                for c in checkpoints:
                    if done >= c and c not in marks:
                        marks[c] = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                    "seconds": time.perf_counter() - t0, "index_kind": tbl.stats()["index_kind"]}
                        print(f"rss: {c} items, peak {marks[c]['peak_rss_mib']:.0f} MiB", flush=True)
        out.write_text(json.dumps({str(k): v for k, v in marks.items()}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=NETTE)
    ap.add_argument("--limit", type=int, default=1000, help="Imagenette val files to ingest per run")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rss", default="10000,100000", help="item counts for the memory run ('' to skip)")
    ap.add_argument("--rss-child", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=RESULTS / "ingest.json")
    args = ap.parse_args(argv)
    checkpoints = [int(c) for c in args.rss.split(",") if c]
    if args.rss_child:
        rss_child(args.data, checkpoints, args.rss_child)
        return 0
    torch.set_num_threads(args.threads)
    files = sorted((args.data / "val").rglob("*.JPEG"))
    files = files[:: max(1, len(files) // args.limit)][: args.limit]
    net = resnet18_like()
    result: dict = {"images": len(files), "threads": args.threads, "batch": BATCH, "rounds": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_mostore(files[:BATCH], Path(tmp) / "warm")  # load weights, warm caches
        run_baseline(files[:BATCH], Path(tmp) / "warm", net)
        for r in range(args.rounds):
            result["rounds"].append({
                "mostore": run_mostore(files, Path(tmp) / f"m{r}"),
                "jpeg_resnet18_lance": run_baseline(files, Path(tmp) / f"b{r}", net),
                "jpeg_lance": run_baseline(files, Path(tmp) / f"j{r}", None),
            })
    best = {k: max((rd[k] for rd in result["rounds"]), key=lambda x: x["images_per_s"]) for k in result["rounds"][0]}
    result["best"] = best
    result["speedup_vs_jpeg_resnet18_lance"] = best["mostore"]["images_per_s"] / best["jpeg_resnet18_lance"]["images_per_s"]
    result["speedup_vs_jpeg_lance"] = best["mostore"]["images_per_s"] / best["jpeg_lance"]["images_per_s"]
    for k, v in best.items():
        split = ", ".join(f"{s} {1e3 * t / len(files):.2f}" for s, t in v["stages_s"].items())
        print(f"{k:22s} {v['images_per_s']:7.1f} img/s  {v['bytes_per_item']:8.0f} B/item  ms/img: {split}")
    print(f"mostore / (JPEG + ResNet-18 + Lance): {result['speedup_vs_jpeg_resnet18_lance']:.2f}x;"
          f" / (JPEG + Lance): {result['speedup_vs_jpeg_lance']:.2f}x")
    with tempfile.TemporaryDirectory() as tmp:
        result["latency_storage"] = ls = latency_and_storage(files, Path(tmp), net)
    print(f"per item: reconstruct {ls['ms']['reconstruct']:.1f} ms ({ls['reconstruct_vs_jpeg_decode']:.1f}x JPEG decode"
          f" {ls['ms']['jpeg_decode']:.2f} ms), classify {ls['ms']['classify']:.1f} ms"
          f" ({ls['classify_vs_jpeg_decode']:.1f}x JPEG decode; {ls['classify_vs_jpeg_decode_resnet18']:.2f}x"
          f" JPEG decode + ResNet-18); table on disk {ls['table_bytes_per_item']:.0f} B/item vs JPEG at"
          f" {ls['psnr']:.2f} dB + float32 vector {ls['jpeg_plus_float32_embedding_bytes']:.0f} B"
          f" ({ls['table_vs_jpeg_plus_embedding']:.2f}x)")
    if checkpoints:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rss.json"
            subprocess.run([sys.executable, "-m", "benchmarks.ingest", "--rss-child", str(out), "--rss", args.rss,
                            "--data", str(args.data)], check=True, cwd=ROOT)
            result["rss"] = json.loads(out.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
