"""Search at scale: recall@10 and queries/s for mostore's index kinds, against raw FAISS.

    python -m benchmarks.search [--n 1000000] [--queries 300] [--real 2000]

Vectors: ``--real`` Imagenette train images are encoded by the shipped codec and embedded by
its learned head (the real 192-d distribution). The ``--n`` stored vectors and the query vectors
are synthesised from them: a random real vector, mixed with a second one (weight 0.0-0.3) and
jittered with Gaussian noise, renormalised. Ground truth is exact inner-product search.

For each index kind mostore builds (``flat``; ``ivfsq`` with several ``nprobe``; ``ivfpq``):

* raw FAISS: the very index object mostore built, queried one vector at a time (as an API call
  is) and in one batch;
* mostore in-process: ``tbl.search(vector).limit(10).select([]).to_list()`` (ids and scores, as
  FAISS returns) on a real Lance table of ``--n`` rows, and the same with each hit's metadata
  read from Lance; unfiltered and with 1% and 10% filters
  (``bucket = 7``, ``bucket < 10``), where every hit must satisfy the filter and there must be
  exactly k;
* mostore over HTTP: a real uvicorn server, ``--clients`` concurrent clients posting vectors.

Writes results/search.json and results/search.png (recall@10 vs queries/s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import faiss
import httpx
import numpy as np
import pyarrow as pa
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
NETTE = ROOT.parent / "shared" / "data" / "imagenette"
RESULTS = ROOT / "benchmarks" / "results"
K = 10


def real_embeddings(codec, embedder, files: list[Path]) -> np.ndarray:
    latents = [codec.encode_with_latents(Image.open(f).convert("RGB"))[1] for f in files]
    return np.asarray(embedder.batch(latents), dtype=np.float32)


def synthesise(real: np.ndarray, n: int, rng: np.random.Generator, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, real.shape[1]), np.float32)
    noise = 0.6 / np.sqrt(real.shape[1])  # per-dimension sigma: about 0.6 of a unit vector's length overall
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        a = real[rng.integers(0, len(real), m)]
        b = real[rng.integers(0, len(real), m)]
        w = rng.uniform(0.0, 0.3, (m, 1)).astype(np.float32)
        v = (1 - w) * a + w * b + rng.normal(0, noise, a.shape).astype(np.float32)
        out[s : s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """Ids (1-based, as stored) of the exact top k, optionally among ``allowed`` ids only."""
    if allowed is None:
        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        return index.search(queries, k)[1] + 1
    sub = base[allowed - 1]
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(sub)
    return allowed[index.search(queries, k)[1]]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:K]) & set(t[:K].tolist())) / K for f, t in zip(found, truth)]))


def qps(fn, queries: np.ndarray, min_seconds: float = 2.0) -> tuple[float, list]:
    """Queries per second of fn(q) over the queries (repeated to run at least min_seconds)."""
    out, done, t0 = [], 0, time.perf_counter()
    while True:
        for q in queries:
            r = fn(q)
            if len(out) < len(queries):
                out.append(r)
            done += 1
        if time.perf_counter() - t0 >= min_seconds:
            return done / (time.perf_counter() - t0), out


def build_table(db_path: Path, vecs: np.ndarray, kind: str, nprobe: int):
    """A real mostore table of len(vecs) rows whose index holds ``vecs`` (ids 1..n)."""
    import mostore
    from mostore.index import IndexConfig, IndexMeta, VectorIndex

    codec = mostore.Codec.load()
    db = mostore.connect(db_path, index=IndexConfig(kind=kind, nprobe=nprobe))
    tbl = db.create_table("search")
    n = len(vecs)
    blob = codec.encode(np.zeros((16, 16, 3), np.uint8))  # a real (tiny) bitstream in every row
    now = datetime.now(timezone.utc)
    for s in range(0, n, 250_000):
        m = min(250_000, n - s)
        ids = np.arange(s + 1, s + m + 1)
        tbl._lt.add(pa.table({
            "id": pa.array(ids, pa.int64()), "latent": pa.array([blob] * m, pa.binary()),
            "width": pa.array([16] * m, pa.int32()), "height": pa.array([16] * m, pa.int32()),
            "mode": pa.array(["RGB"] * m, pa.string()), "quality": pa.array([codec.quality] * m, pa.int32()),
            "nbytes": pa.array([len(blob)] * m, pa.int64()), "codec_id": pa.array([codec.id] * m, pa.string()),
            "created_at": pa.array([now] * m, pa.timestamp("us", tz="UTC")),
        }))
    tbl._lt.add_columns({"bucket": "id % 100"})
    index = VectorIndex(vecs.shape[1], IndexConfig(kind=kind, nprobe=nprobe))
    t0 = time.perf_counter()
    index.add(np.arange(1, n + 1), vecs)
    build_s = time.perf_counter() - t0
    index.save(tbl._side / "index", IndexMeta(tbl.version, tbl.embedder.id, len(index), index.kind))
    (tbl._side / "next_id.json").write_text(json.dumps({"next_id": n + 1}))
    tbl.optimize()  # compaction and the id / filter-column indexes a bulk load should end with
    return build_s


def main(argv=None) -> int:
    import mostore
    from mostore.heads import load_embedder

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--real", type=int, default=2000)
    ap.add_argument("--nprobe", default="8,16,32,64")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "search.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    codec = mostore.Codec.load()
    files = sorted((NETTE / "train").rglob("*.JPEG"))
    files = [files[i] for i in rng.permutation(len(files))[: args.real]]
    t0 = time.perf_counter()
    real = real_embeddings(codec, load_embedder(codec), files)
    print(f"embedded {len(real)} real images in {time.perf_counter() - t0:.0f} s", flush=True)
    base = synthesise(real, args.n, rng)
    queries = synthesise(real, args.queries, np.random.default_rng(1))
    truth = exact_topk(base, queries, K)
    buckets = (np.arange(1, args.n + 1) % 100)
    filters = {"1%": ("bucket = 7", np.flatnonzero(buckets == 7) + 1),
               "10%": ("bucket < 10", np.flatnonzero(buckets < 10) + 1)}
    filtered_truth = {name: exact_topk(base, queries, K, ids) for name, (_, ids) in filters.items()}
    result = {"n": args.n, "dim": int(base.shape[1]), "queries": args.queries, "threads": args.threads, "runs": []}
    configs = [("flat", 0)] + [("ivfsq", int(p)) for p in args.nprobe.split(",")] + [("ivfpq", 32)]
    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, nprobe in configs:
            db_path = Path(tmp) / kind
            if kind not in built:
                build_s = build_table(db_path, base, kind, max(nprobe, 1))
                built[kind] = db_path
                print(f"built {kind} over {args.n} in {build_s:.0f} s", flush=True)
            from mostore.index import IndexConfig

            tbl = mostore.connect(db_path, index=IndexConfig(kind=kind, nprobe=max(nprobe, 1))).open_table("search")
            tbl._sync_index()
            raw = tbl._index.index
            params = faiss.SearchParametersIVF(nprobe=nprobe) if kind != "flat" else None
            raw_qps, raw_out = qps(lambda q: raw.search(q[None], K, params=params)[1][0].tolist(), queries)
            t0 = time.perf_counter()
            batch_ids = raw.search(queries, K, params=params)[1]
            raw_batch_qps = len(queries) / (time.perf_counter() - t0)
            m_qps, m_out = qps(lambda q: [h["id"] for h in tbl.search(q).limit(K).select([]).to_list()], queries)
            rows_qps, _ = qps(lambda q: tbl.search(q).limit(K).to_list(), queries, 1.0)
            run = {"kind": kind, "nprobe": nprobe, "recall_raw": recall(raw_out, truth),
                   "recall_raw_batch": recall(batch_ids.tolist(), truth), "recall_mostore": recall(m_out, truth),
                   "raw_qps": raw_qps, "raw_batch_qps": raw_batch_qps, "mostore_qps": m_qps,
                   "mostore_with_rows_qps": rows_qps,
                   "mostore_over_raw": m_qps / raw_qps, "index_bytes": (db_path / "_mostore" / "search" /
                                                                         "index.faiss").stat().st_size}
            for name, (where, ids) in filters.items():
                allowed = set(ids.tolist())
                f_qps, f_out = qps(lambda q, w=where: tbl.search(q).where(w).limit(K).to_list(), queries, 1.0)
                run[f"filtered_{name}"] = {
                    "qps": f_qps,
                    "recall": recall([[h["id"] for h in hits] for hits in f_out], filtered_truth[name]),
                    "exactly_k": all(len(hits) == K for hits in f_out),
                    "all_match": all(h["id"] in allowed for hits in f_out for h in hits),
                }
            result["runs"].append(run)
            print(f"{kind:6s} nprobe {nprobe:3d}  recall raw {run['recall_raw']:.3f} mostore {run['recall_mostore']:.3f}"
                  f"  q/s raw {raw_qps:8.1f} (batch {raw_batch_qps:8.1f}) mostore {m_qps:7.1f}"
                  f" ({run['mostore_over_raw']:.2f}x), with rows {rows_qps:6.1f}  1%: {run['filtered_1%']['qps']:.1f} q/s"
                  f" exact-k {run['filtered_1%']['exactly_k']}  10%: {run['filtered_10%']['qps']:.1f} q/s", flush=True)
        # HTTP: every setting with recall >= 0.95, many clients on one server
        result["http"] = []
        for run in [r for r in result["runs"] if r["recall_mostore"] >= 0.95]:
            h = http_qps(built[run["kind"]], queries, args.clients, run)
            result["http"].append(h)
            print(f"http ({run['kind']} nprobe {run['nprobe']}, {args.clients} clients): {h['qps']:.1f} q/s,"
                  f" {h['over_in_process']:.2f}x in-process; errors {h['errors']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out}")
    return 0


def http_qps(db_path: Path, queries: np.ndarray, clients: int, run: dict, seconds: float = 10.0) -> dict:
    from benchmarks.reliability import start_server

    settings = {"nprobe": run["nprobe"]} if run["kind"] != "flat" else {}
    proc, url = start_server(db_path, "default", **settings)
    done, errors, stop = [0], [0], time.perf_counter() + seconds

    def client(i):
        with httpx.Client(base_url=url, timeout=60) as c:
            j = i
            while time.perf_counter() < stop:
                r = c.post("/tables/search/search",
                           json={"vector": queries[j % len(queries)].tolist(), "k": K, "select": []})
                if r.status_code != 200 or len(r.json()["hits"]) != K:
                    errors[0] += 1
                done[0] += 1
                j += clients

    try:
        with httpx.Client(base_url=url, timeout=600) as c:  # load the index before timing
            c.post("/tables/search/search", json={"vector": queries[0].tolist(), "k": K}).raise_for_status()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        q = done[0] / (time.perf_counter() - t0)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    return {"kind": run["kind"], "nprobe": run["nprobe"], "clients": clients, "qps": q, "errors": errors[0],
            "over_in_process": q / run["mostore_qps"]}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, key, rkey in (("raw FAISS", "raw_qps", "recall_raw"), ("mostore in-process", "mostore_qps", "recall_mostore")):
        xs = [r[rkey] for r in result["runs"]]
        ys = [r[key] for r in result["runs"]]
        ax.scatter(xs, ys, label=label, marker="o" if key == "raw_qps" else "x")
        if key == "raw_qps":
            continue
        for r, x, y in zip(result["runs"], xs, ys):
            name = r["kind"] if r["kind"] == "flat" else f"{r['kind']} nprobe {r['nprobe']}"
            left = x > 0.8  # labels to the left of points near the right edge
            ax.annotate(name, (x, y), xytext=(-6 if left else 6, 0), textcoords="offset points",
                        ha="right" if left else "left", va="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries / s (one at a time)")
    ax.set_title(f"{result['n']:,} vectors, {result['dim']}-d, {result['threads']} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
