"""Crash and concurrency harness: SIGKILL ingest at chosen moments, many processes on one table.

    python -m benchmarks.reliability crash --kills 100 --http-kills 100
    python -m benchmarks.reliability concurrency --seconds 30 --writers 3 --deleters 1 --searchers 2

The tests (tests/test_reliability.py) run the same functions with small counts.

**crash**: a child process ingests batches of images (through the Python API, or a real uvicorn
server fed by HTTP clients) into one table. The child marks the stage it is in (encode, Lance
commit, index save, search) in a shared memory page; the parent waits until the stage it aims at
is running and SIGKILLs the child there. After every kill the parent checks, from the files alone:
every batch whose ``add()`` returned (or whose request got a 2xx) is present, its bitstreams are
byte-identical to those written and decode; no batch is partly present; no id appears twice;
``Table.check()`` finds no damaged row and the FAISS index, once caught up, holds exactly the
table's ids. The server is restarted and must answer ``/check`` and a search. Children come from
a forkserver that has imported mostore already, so a restart costs milliseconds, not an import.

**concurrency**: writer, deleter and searcher processes on the same table for a while, each
logging every operation's outcome; readers must see no error, writers succeed or get a typed
ConflictError, and afterwards no acknowledged add is missing unless a deleter removed it, no id
is duplicated and the index agrees with the table. With ``--http``, the same against one server.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import mmap
import multiprocessing
import os
import random
import signal
import socket
import struct
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

TABLE = "crash"
PHASES = {"other": 0, "encode": 1, "commit": 2, "index": 3, "search": 4}
RESULTS = Path(__file__).parent / "results"


# ---- shared pieces ------------------------------------------------------------------------


def test_image(batch: int, j: int, size: tuple[int, int] = (48, 40)) -> np.ndarray:
    """A smooth, seeded colour image for item j of a batch (different for every (batch, j))."""
    rng = np.random.default_rng([batch, j])
    w, h = size
    small = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    arr = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
    return np.clip(arr + rng.integers(-8, 9, size=(h, w, 3)), 0, 255).astype(np.uint8)


def batch_size(batch: int) -> int:
    return 1 + batch % 3


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Marks:
    """A page shared by parent and child: bytes 0..7 count the threads in each stage, 8..16 batches done."""

    def __init__(self, path: Path, create: bool = False):
        self.path = path
        if create:
            path.write_bytes(b"\0" * 16)
        self._fh = open(path, "r+b")
        self._mm = mmap.mmap(self._fh.fileno(), 16)

    def active(self) -> list[str]:
        return [name for name, i in PHASES.items() if i and self._mm[i]]

    def stage_at(self, target: str) -> str:
        """The stage to report for a kill aimed at ``target``: it, if running, else what is."""
        now = self.active()
        return target if target in now else (now[0] if now else "other")

    @property
    def done(self) -> int:
        return struct.unpack_from("<q", self._mm, 8)[0]

    def reset(self) -> None:
        self._mm[:] = b"\0" * 16

    def count(self) -> None:
        struct.pack_into("<q", self._mm, 8, self.done + 1)

    @contextlib.contextmanager
    def stage(self, name: str):
        i = PHASES[name]
        self._mm[i] = min(self._mm[i] + 1, 255)  # two threads racing here can only mislabel a kill
        try:
            yield
        finally:
            self._mm[i] = max(self._mm[i] - 1, 0)

    def close(self) -> None:
        self._mm.close()
        self._fh.close()


def instrument(marks: Marks) -> None:
    """Mark the stages of ingest and search in this (child) process."""
    import lancedb.table

    from mostore.codec.model import Codec
    from mostore.index import VectorIndex
    from mostore.store import Table

    def wrap(cls, attr, stage):
        original = getattr(cls, attr)

        def marked(*args, **kwargs):
            with marks.stage(stage):
                return original(*args, **kwargs)

        setattr(cls, attr, marked)

    wrap(Codec, "encode_with_latents", "encode")
    wrap(lancedb.table.LanceTable, "add", "commit")
    wrap(VectorIndex, "save", "index")
    wrap(Table, "_knn", "search")


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["benchmarks.forkserver_preload"])
    return ctx


def _child_setup() -> None:
    """One torch thread; and exit when the harness dies (a forkserver child would outlive it)."""
    import torch

    torch.set_num_threads(1)
    parent = multiprocessing.parent_process()
    if parent is not None:

        def watch():
            while parent.is_alive():
                time.sleep(0.5)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Journal:
    """Append-only record of acknowledged batches: one JSON line each, fsynced before going on."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, entry: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def entries(self) -> list[dict]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:  # the line being written at the kill
                continue
        return out


# ---- the children -------------------------------------------------------------------------


def _api_child(db_path: str, codec_path: str, journal: str, marks_path: str, first_batch: int) -> None:
    _child_setup()
    import mostore
    from mostore.codec.model import Codec

    marks = Marks(Path(marks_path))
    instrument(marks)
    codec = Codec.load(codec_path)
    blobs: list[bytes] = []
    real = Codec.encode_with_latents

    def keep(self, image, quality=None):  # remember what was written, to compare after the kill
        out = real(self, image, quality)
        blobs.append(out[0])
        return out

    Codec.encode_with_latents = keep
    tbl = mostore.connect(db_path, codec=codec).create_table(TABLE, exist_ok=True)
    log = Journal(Path(journal))
    batch = first_batch
    while True:
        n = batch_size(batch)
        blobs.clear()
        ids = tbl.add([test_image(batch, j) for j in range(n)], metadata=[{"batch": batch, "j": j} for j in range(n)])
        log.append({"batch": batch, "ids": ids, "sha": [sha(b) for b in blobs]})
        marks.count()
        batch += 1


def _server_child(db_path: str, codec_path: str, port: int, marks_path: str | None, settings: dict) -> None:
    _child_setup()
    import uvicorn

    from server.app import Settings, create_app

    if marks_path:
        instrument(Marks(Path(marks_path)))
    app = create_app(Settings(db=Path(db_path), codec=codec_path, **settings))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


# ---- checking after a kill ----------------------------------------------------------------


@dataclass
class Verdict:
    acked_batches: int = 0
    acked_items: int = 0
    rows: int = 0
    lost: int = 0  # acknowledged items missing, or with other bytes than written
    partial_batches: int = 0  # batches with some but not all items present
    duplicate_ids: int = 0
    damaged: int = 0  # rows whose bitstream fails its checksum or does not decode
    index_disagrees: int = 0  # ids in the table but not in the caught-up index, or the reverse
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.partial_batches or self.duplicate_ids or self.damaged or self.index_disagrees)


def verify(db_path: Path, codec, journal: Journal, reconstruct_from: int = 0) -> Verdict:
    """Open the table from its files and check everything the journal says was acknowledged."""
    import mostore

    v = Verdict()
    entries = journal.entries()
    v.acked_batches = len(entries)
    v.acked_items = sum(len(e["ids"]) for e in entries)
    db = mostore.connect(db_path, codec=codec)
    if TABLE not in db.table_names():
        v.lost = v.acked_items
        if v.lost:
            v.problems.append("table missing")
        return v
    tbl = db.open_table(TABLE)
    cols = ["id", "latent"] + [c for c in ("batch", "j") if c in tbl.metadata_columns()]
    t = tbl._scan(cols).to_pylist()
    v.rows = len(t)
    by_id = {}
    for row in t:
        if row["id"] in by_id:
            v.duplicate_ids += 1
        by_id[row["id"]] = row
    for e in entries:
        for item_id, digest in zip(e["ids"], e.get("sha") or [None] * len(e["ids"])):
            row = by_id.get(item_id)
            if row is None or (digest is not None and sha(row["latent"]) != digest) or row.get("batch") != e["batch"]:
                v.lost += 1
                v.problems.append(f"item {item_id} of batch {e['batch']}")
    per_batch: dict[int, int] = {}
    for row in t:
        per_batch[row.get("batch")] = per_batch.get(row.get("batch"), 0) + 1
    for b, n in per_batch.items():
        if b is None or n != batch_size(b):
            v.partial_batches += 1
            v.problems.append(f"batch {b} has {n} rows")
    report = tbl.check()  # checksums of every row, then the index caught up and compared
    v.damaged = len(report["damaged"])
    v.index_disagrees = report["index_missing"] + report["index_extra"]
    for e in entries:  # the newest acknowledged items decode to images of their size
        for item_id in e["ids"]:
            if item_id >= reconstruct_from and item_id in by_id:
                if tbl.reconstruct(item_id).size != (48, 40):
                    v.damaged += 1
    return v


# ---- the crash harness --------------------------------------------------------------------


def _kill_at(proc, marks: Marks, target: str, warmup: int, rng: random.Random, timeout: float = 60.0) -> str:
    """Wait for ``warmup`` finished batches and then for the ``target`` stage; SIGKILL; return the stage hit."""
    deadline = time.monotonic() + timeout
    while marks.done < warmup and time.monotonic() < deadline and proc.is_alive():
        time.sleep(0.001)
    while time.monotonic() < deadline and proc.is_alive():
        if target == "any" or target in marks.active():
            break
    if target == "any":
        time.sleep(rng.uniform(0, 0.05))
    elif target in ("encode", "commit"):
        time.sleep(rng.uniform(0, 0.002))  # somewhere inside the stage, not only at its first instruction
    hit = marks.stage_at(target)
    if not proc.is_alive():
        raise RuntimeError(f"the child died by itself (exit code {proc.exitcode})")
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    return hit


def crash_api(workdir: Path, codec_path: str, kills: int, seed: int = 0) -> dict:
    """SIGKILL Python-API ingest ``kills`` times; verify the table after each kill."""
    from mostore.codec.model import Codec

    ctx = _context()
    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path, journal = workdir / "db", Journal(workdir / "journal.jsonl")
    marks = Marks(workdir / "marks", create=True)
    codec = Codec.load(codec_path)
    targets = ["encode", "commit", "index", "any"]
    rounds, seen_ids = [], 0
    try:
        for k in range(kills):
            target = targets[k % len(targets)]
            marks.reset()
            proc = ctx.Process(
                target=_api_child, args=(str(db_path), codec_path, str(journal.path), str(marks.path), k * 100_000)
            )
            proc.start()
            hit = _kill_at(proc, marks, target, warmup=rng.randint(0, 3), rng=rng)
            verdict = verify(db_path, codec, journal, reconstruct_from=seen_ids)
            seen_ids = max([seen_ids] + [i + 1 for e in journal.entries() for i in e["ids"]])
            rounds.append({"kill": k, "target": target, "hit": hit, **asdict(verdict), "ok": verdict.ok})
    finally:
        marks.close()
    return _summary("api", rounds)


def _http_clients(url: str, journal: Journal, first_batch: int, stop: threading.Event, stats: dict) -> list:
    """One adding and one searching client thread against the server at ``url``."""

    def adder():
        batch = first_batch
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                n = batch_size(batch)
                files = [
                    ("files", (f"{batch}-{j}.png", png_bytes(test_image(batch, j)), "image/png")) for j in range(n)
                ]
                meta = json.dumps([{"batch": batch, "j": j} for j in range(n)])
                try:
                    r = c.post(f"/tables/{TABLE}/items", files=files, data={"metadata": meta})
                except httpx.HTTPError:
                    return  # the server is gone
                stats["status"][r.status_code] = stats["status"].get(r.status_code, 0) + 1
                if r.status_code >= 300:
                    continue
                ids = r.json()["ids"]
                digests = []
                for item_id in ids:  # what the server stored, to compare after the kill
                    try:
                        lr = c.get(f"/tables/{TABLE}/items/{item_id}/latent")
                        digests.append(sha(lr.content) if lr.status_code == 200 else None)
                    except httpx.HTTPError:
                        digests.append(None)
                journal.append({"batch": batch, "ids": ids, "sha": digests})
                batch += 1

    def searcher():
        probe = png_bytes(test_image(first_batch, 0))
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(
                        f"/tables/{TABLE}/search", files={"image": ("q.png", probe, "image/png")}, data={"k": "5"}
                    )
                except httpx.HTTPError:
                    return
                stats["status"][r.status_code] = stats["status"].get(r.status_code, 0) + 1
                stats["searches"] += 1

    return [threading.Thread(target=adder, daemon=True), threading.Thread(target=searcher, daemon=True)]


def start_server(db_path: Path, codec_path: str, marks_path: Path | None = None, **settings):
    """A real uvicorn server (``server.app``) in a child process on a loopback port: (process, url)."""
    port = _free_port()
    proc = _context().Process(
        target=_server_child, args=(str(db_path), codec_path, port, str(marks_path) if marks_path else None, settings)
    )
    proc.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not proc.is_alive():
            raise RuntimeError(f"server exited with {proc.exitcode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.02)
    raise RuntimeError("server did not start in 60 s")


def crash_http(workdir: Path, codec_path: str, kills: int, seed: int = 0) -> dict:
    """SIGKILL a real uvicorn server ``kills`` times while clients add and search."""
    from mostore.codec.model import Codec

    rng = random.Random(seed)
    workdir.mkdir(parents=True, exist_ok=True)
    db_path, journal, marks_path = workdir / "db", Journal(workdir / "journal.jsonl"), workdir / "marks"
    marks = Marks(marks_path, create=True)
    codec = Codec.load(codec_path)
    import mostore

    mostore.connect(db_path, codec=codec).create_table(TABLE, exist_ok=True)
    targets = ["encode", "commit", "index", "search"]
    rounds, stats, seen_ids = [], {"status": {}, "searches": 0}, 0
    try:
        for k in range(kills):
            target = targets[k % len(targets)]
            marks.reset()
            proc, url = start_server(db_path, codec_path, marks_path)
            before = len(journal.entries())
            stop = threading.Event()
            threads = _http_clients(url, journal, k * 100_000, stop, stats)
            for t in threads:
                t.start()
            warm = rng.randint(0, 3)
            deadline = time.monotonic() + 60
            while len(journal.entries()) - before < warm and time.monotonic() < deadline:
                time.sleep(0.005)
            hit = _kill_at(proc, marks, target, warmup=0, rng=rng)
            stop.set()
            for t in threads:
                t.join(30)
            verdict = verify(db_path, codec, journal, reconstruct_from=seen_ids)
            seen_ids = max([seen_ids] + [i + 1 for e in journal.entries() for i in e["ids"]])
            # the restarted server answers: a clean check and a search that finds a stored item
            proc, url = start_server(db_path, codec_path, marks_path)
            try:
                report = httpx.get(f"{url}/tables/{TABLE}/check", timeout=60).json()
                served = bool(report.get("ok"))
                if verdict.acked_items:
                    last = journal.entries()[-1]["ids"][0]
                    hits = httpx.post(f"{url}/tables/{TABLE}/search", json={"id": last, "k": 5}, timeout=60).json()
                    served = served and last in [h["id"] for h in hits.get("hits", [])]
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.join(10)
            rounds.append(
                {
                    "kill": k,
                    "target": target,
                    "hit": hit,
                    **asdict(verdict),
                    "served_after_restart": served,
                    "ok": verdict.ok and served,
                }
            )
    finally:
        marks.close()
    out = _summary("http", rounds)
    out["responses"] = {str(s): n for s, n in sorted(stats["status"].items())}
    out["server_errors"] = sum(n for s, n in stats["status"].items() if s >= 500)
    out["searches"] = stats["searches"]
    return out


def _summary(kind: str, rounds: list[dict]) -> dict:
    last = rounds[-1] if rounds else {}
    return {
        "kind": kind,
        "kills": len(rounds),
        "kills_by_stage": {s: sum(r["hit"] == s for r in rounds) for s in PHASES},
        "failed_rounds": sum(not r["ok"] for r in rounds),
        "acked_items": last.get("acked_items", 0),
        "rows": last.get("rows", 0),
        "items_lost": sum(r["lost"] for r in rounds),
        "partial_batches": sum(r["partial_batches"] for r in rounds),
        "duplicate_ids": sum(r["duplicate_ids"] for r in rounds),
        "damaged_rows": sum(r["damaged"] for r in rounds),
        "index_disagreements": sum(r["index_disagrees"] for r in rounds),
        "problems": [p for r in rounds for p in r["problems"]][:20],
        "rounds": rounds,
    }


# ---- concurrency --------------------------------------------------------------------------


def _worker(target: str, codec_path: str, role: str, idx: int, seconds: float, log_path: str) -> None:
    """One writer, deleter or searcher on the table at ``target`` (a database folder or a server URL)."""
    _child_setup()
    import mostore
    from mostore.codec.model import Codec
    from mostore.errors import ConflictError, MostoreError, NotFoundError

    if target.startswith("http"):
        tbl = mostore.connect(target).open_table(TABLE)
    else:
        tbl = mostore.connect(target, codec=Codec.load(codec_path)).open_table(TABLE)
    rng = random.Random(idx)
    probe = test_image(idx, 99)
    end = time.monotonic() + seconds
    batch = (idx + 1) * 1_000_000
    with open(log_path, "a") as log:

        def record(**entry):
            log.write(json.dumps(entry) + "\n")
            log.flush()

        while time.monotonic() < end:
            try:
                if role == "writer":
                    n = batch_size(batch)
                    ids = tbl.add(
                        [test_image(batch, j) for j in range(n)], metadata=[{"batch": batch, "j": j} for j in range(n)]
                    )
                    record(op="add", ok=True, batch=batch, ids=ids)
                    batch += 1
                elif role == "deleter":
                    hits = tbl.search(probe).limit(10).to_list()
                    if not hits:
                        time.sleep(0.01)
                        continue
                    victim = rng.choice(hits)["id"]
                    try:
                        tbl.delete(victim)
                        record(op="delete", ok=True, id=victim)
                    except NotFoundError:  # another deleter got it first: a typed answer, not an error
                        record(op="delete", ok=True, id=victim, raced=True)
                    time.sleep(0.02)
                else:
                    hits = tbl.search(probe).limit(10).to_list()
                    tbl.count_rows()
                    gone = 0
                    if hits:
                        try:
                            tbl.reconstruct(hits[0]["id"])
                        except NotFoundError:  # deleted between the search and the read
                            gone = 1
                    record(op="search", ok=True, hits=len(hits), gone=gone)
            except ConflictError as exc:
                record(op=role, ok=False, error="ConflictError", message=str(exc))
            except MostoreError as exc:
                record(op=role, ok=False, error=type(exc).__name__, message=str(exc))
            except Exception as exc:  # anything untyped is a failure of the harness's check
                record(op=role, ok=False, error=f"untyped {type(exc).__name__}", message=str(exc))


def concurrency(
    workdir: Path,
    codec_path: str,
    *,
    writers: int = 3,
    deleters: int = 1,
    searchers: int = 2,
    seconds: float = 10.0,
    http: bool = False,
) -> dict:
    """Several processes add, delete and search one table at once; then check what is stored."""
    from mostore.codec.model import Codec

    import mostore

    ctx = _context()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / "db"
    codec = Codec.load(codec_path)
    tbl = mostore.connect(db_path, codec=codec).create_table(TABLE, exist_ok=True)
    tbl.add([test_image(0, j) for j in range(8)], metadata=[{"batch": -1, "j": j} for j in range(8)])
    seeded = set(int(i) for i in tbl._scan(["id"])["id"].to_pylist())
    server = None
    target = str(db_path)
    if http:
        server, target = start_server(db_path, codec_path)
    roles = ["writer"] * writers + ["deleter"] * deleters + ["searcher"] * searchers
    logs = [workdir / f"{role}-{i}.jsonl" for i, role in enumerate(roles)]
    for p in logs:
        p.unlink(missing_ok=True)
    procs = [
        ctx.Process(target=_worker, args=(target, codec_path, role, i, seconds, str(p)))
        for i, (role, p) in enumerate(zip(roles, logs))
    ]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(seconds + 120)
    wall = time.monotonic() - t0
    server_died = False
    if server is not None:
        server_died = not server.is_alive()
        if not server_died:
            os.kill(server.pid, signal.SIGKILL)
        server.join(10)
    ops = [
        dict(json.loads(line), role=role)
        for role, p in zip(roles, logs)
        if p.exists()
        for line in p.read_text().splitlines()
    ]
    added = [i for o in ops if o["op"] == "add" and o["ok"] for i in o["ids"]]
    deleted = {o["id"] for o in ops if o["op"] == "delete" and o["ok"] and not o.get("raced")}
    stored = [int(i) for i in mostore.connect(db_path, codec=codec).open_table(TABLE)._scan(["id"])["id"].to_pylist()]
    report = mostore.connect(db_path, codec=codec).open_table(TABLE).check()
    expected = (set(added) | seeded) - deleted
    errors = [o for o in ops if not o["ok"]]
    by_role = {
        r: {"ops": sum(o["role"] == r for o in ops), "errors": sum(o["role"] == r and not o["ok"] for o in ops)}
        for r in ("writer", "deleter", "searcher")
    }
    return {
        "mode": "http" if http else "processes",
        "processes": {"writers": writers, "deleters": deleters, "searchers": searchers},
        "seconds": round(wall, 1),
        "ops": by_role,
        "items_added": len(added),
        "items_deleted": len(deleted),
        "reader_errors": by_role["searcher"]["errors"],
        "writer_conflicts": sum(o.get("error") == "ConflictError" for o in errors),
        "untyped_errors": sum(o.get("error", "").startswith("untyped") for o in errors),
        "other_errors": [
            f"{o['role']}: {o['error']}: {o['message'][:200]}" for o in errors if o.get("error") != "ConflictError"
        ][:10],
        "duplicate_ids": len(added) - len(set(added)) + len(stored) - len(set(stored)),
        "lost_writes": len(expected - set(stored)),
        "unexpected_rows": len(set(stored) - expected),
        "check_ok": bool(report["ok"]),
        "server_died": server_died,
    }


def concurrency_ok(out: dict) -> bool:
    return (
        out["reader_errors"] == 0
        and out["untyped_errors"] == 0
        and not out["other_errors"]
        and out["duplicate_ids"] == 0
        and out["lost_writes"] == 0
        and out["unexpected_rows"] == 0
        and out["check_ok"]
        and not out["server_died"]
    )


# ---- command line -------------------------------------------------------------------------


def _codec_arg(name: str, workdir: Path) -> str:
    """A checkpoint path for the children: shipped weights by name, a path, or 'tiny' (a small random codec)."""
    if name == "tiny":
        import sys

        sys.path.insert(0, str(Path(__file__).parent.parent))
        from conftest import make_tiny_model

        from mostore.codec.model import save_checkpoint

        path = workdir / "tiny.pt"
        save_checkpoint(make_tiny_model(), path)
        return str(path)
    from mostore.codec.model import WEIGHTS_DIR

    path = Path(name) if Path(name).suffix else WEIGHTS_DIR / f"{name}.pt"
    return str(path.resolve())


def main(argv=None) -> int:
    import shutil
    import tempfile

    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("crash", help="SIGKILL ingest (Python API and HTTP server) at chosen stages")
    c.add_argument("--kills", type=int, default=100, help="kills of a Python-API ingest process")
    c.add_argument("--http-kills", type=int, default=100, help="kills of a server under HTTP clients")
    k = sub.add_parser("concurrency", help="writers, deleters and searchers on one table at once")
    k.add_argument("--seconds", type=float, default=30.0)
    k.add_argument("--writers", type=int, default=3)
    k.add_argument("--deleters", type=int, default=1)
    k.add_argument("--searchers", type=int, default=2)
    for p in (c, k):
        p.add_argument("--codec", default="default", help="shipped weights name, a checkpoint path, or 'tiny'")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--out", type=Path, default=None, help="JSON result (default benchmarks/results/)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mostore-reliability-"))
    try:
        codec_path = _codec_arg(args.codec, work)
        if args.cmd == "crash":
            result = {
                "api": crash_api(work / "api", codec_path, args.kills, args.seed),
                "http": crash_http(work / "http", codec_path, args.http_kills, args.seed),
            }
            for r in result.values():
                print(
                    f"{r['kind']:5s} kills {r['kills']:4d}  by stage {r['kills_by_stage']}  acked {r['acked_items']}"
                    f"  lost {r['items_lost']}  partial {r['partial_batches']}  dup {r['duplicate_ids']}"
                    f"  damaged {r['damaged_rows']}  index disagreements {r['index_disagreements']}"
                    f"  failed rounds {r['failed_rounds']}"
                )
            print(f"http responses {result['http']['responses']}  5xx {result['http']['server_errors']}")
            ok = all(r["failed_rounds"] == 0 for r in result.values()) and result["http"]["server_errors"] == 0
        else:
            result = {
                m: concurrency(
                    work / m,
                    codec_path,
                    writers=args.writers,
                    deleters=args.deleters,
                    searchers=args.searchers,
                    seconds=args.seconds,
                    http=(m == "http"),
                )
                for m in ("processes", "http")
            }
            for r in result.values():
                print(json.dumps({k: v for k, v in r.items()}, indent=None))
            ok = all(concurrency_ok(r) for r in result.values())
        result["codec"] = args.codec
        out = args.out or RESULTS / f"reliability-{args.cmd}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
        print(f"wrote {out}; {'all checks passed' if ok else 'CHECKS FAILED'}")
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
