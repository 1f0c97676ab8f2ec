"""Hostile input, over HTTP and through the Python API: typed errors, no 5xx, stored data unchanged.

    python -m benchmarks.hostile [--codec default]

A table with a few items is made; then every case below is tried against a real uvicorn server
and (where it has a Python form) against the embedded API. A case passes when the server answers
4xx with a JSON body ``{"error", "message"}`` (the API: raises a :class:`mostore.MostoreError`
subclass) and a digest of the whole database (table names, every row's id, metadata and latent
bytes, the schema) is the same before and after. Prints a table by category and writes JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import signal
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import httpx
import numpy as np

from benchmarks.reliability import RESULTS, _codec_arg, png_bytes, start_server, test_image

TABLE = "hostile"
MAX_UPLOAD = 2 * 1024 * 1024  # the server under test runs with a small upload limit


def _png_header(width: int, height: int) -> bytes:
    """A valid PNG whose header declares width x height (a decompression bomb's signature)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(test_image(7, 0, (64, 64))).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def bad_files() -> dict[str, tuple[str, bytes]]:
    """name -> (filename, bytes) of uploads that are not acceptable images."""
    jpeg, png = _jpeg(), png_bytes(test_image(7, 1, (64, 64)))
    corrupt = bytearray(jpeg)
    corrupt[2:40] = os.urandom(38)  # the markers after SOI: no decoder can find the frame
    return {
        "zero bytes": ("empty.jpg", b""),
        "truncated JPEG": ("cut.jpg", jpeg[: len(jpeg) // 3]),
        "truncated PNG": ("cut.png", png[: len(png) // 2]),
        "corrupted JPEG header": ("bad.jpg", bytes(corrupt)),
        "text named .jpg": ("notes.jpg", b"this is not an image\n" * 20),
        "ELF named .png": ("prog.png", b"\x7fELF\x02\x01\x01" + b"\0" * 200),
        "PDF named .jpg": ("doc.jpg", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n"),
        "decompression bomb 100k x 100k PNG": ("bomb.png", _png_header(100_000, 100_000)),
        "decompression bomb 1 x 2^31-1 PNG": ("bomb2.png", _png_header(1, 2**31 - 1)),
        "HTML named .png": ("x.png", b"<html><script>alert(1)</script></html>"),
    }


def bad_metadata() -> dict[str, Any]:
    nested: Any = "x"
    for _ in range(200):
        nested = {"a": nested}
    return {
        "deeply nested dict": {"k": nested},
        "list value": {"tags": ["a", "b"]},
        "dict value": {"k": {"a": 1}},
        "huge string (1 MB)": {"note": "x" * 1_000_000},
        "SQL in the key": {"label; DROP TABLE hostile": "x"},
        "key with a quote": {"a'b": 1},
        "key of 10k chars": {"k" * 10_000: 1},
        "reserved column name": {"latent": "x"},
        "10k keys": {f"k{i}": i for i in range(10_000)},
        "int too large for int64": {"n": 2**80},
        "NaN value": {"x": float("nan")},
        "wrong type for an existing column": {"label": 5},
        "not a dict": [1, 2, 3],
    }


BAD_FILTERS = {
    "OR 1=1": "label = 'a' OR 1=1",
    "statement after ;": "label = 'a'; DROP TABLE hostile",
    "comment": "label = 'a' -- ",
    "UNION SELECT": "id = 1 UNION SELECT * FROM hostile",
    "function call": "lower(label) = 'a'",
    "sleep()": "sleep(10) = 0",
    "sub-query": "id IN (SELECT id FROM hostile)",
    "unknown column": "secret = 1",
    "unbalanced quote": "label = 'a",
    "string vs number": "id = 'one'",
    "10k characters": "label = '" + "a" * 10_000 + "'",
    "5000 nested parentheses": "(" * 5000 + "id = 1" + ")" * 5000,
    "backslash escape": "label = 'a\\' OR '1'='1'",
    "double-quoted identifier": "\"label\" = 'a'",
    "empty": " ",
}

BAD_TABLE_NAMES = {
    "../ traversal": "../etc",
    "encoded traversal": "..%2F..%2Fetc",
    "slash": "a/b",
    "leading dot": ".hidden",
    "1000 characters": "t" * 1000,
    "NUL byte": "a\x00b",
    "unicode": "tablé",
    "absolute path": "/etc/passwd",
}


@dataclass
class Case:
    category: str
    name: str
    http: Callable[[httpx.Client], httpx.Response] | None
    api: Callable[[Any], Any] | None = None
    #: broken HTTP framing: uvicorn refuses it (plain-text 400) before the app sees a request
    protocol: bool = False


def cases(item_id: int, dim: int) -> list[Case]:
    """Every hostile case; ``item_id`` is a stored item, ``dim`` the embedding's dimension."""
    out: list[Case] = []
    t = f"/tables/{TABLE}"
    # images
    for name, (fname, data) in bad_files().items():
        mime = "image/png" if fname.endswith(".png") else "image/jpeg"
        out.append(
            Case(
                "bad image files",
                name,
                lambda c, f=fname, d=data, m=mime: c.post(f"{t}/items", files={"files": (f, d, m)}),
                lambda tbl, d=data: tbl.add([d]),
            )
        )
        out.append(
            Case(
                "bad image files",
                f"search with: {name}",
                lambda c, f=fname, d=data, m=mime: c.post(f"{t}/search", files={"image": (f, d, m)}),
                lambda tbl, d=data: tbl.search(d).to_list(),
            )
        )
    good = png_bytes(test_image(9, 9))
    out.append(
        Case(
            "bad image files",
            "one bad file among good ones",
            lambda c: c.post(
                f"{t}/items",
                files=[("files", ("a.png", good, "image/png")), ("files", ("b.jpg", b"junk", "image/jpeg"))],
            ),
            lambda tbl: tbl.add([good, b"junk"]),
        )
    )
    # size limits
    big = os.urandom(MAX_UPLOAD + 1024)
    out.append(
        Case(
            "upload limits",
            "body over the upload limit",
            lambda c: c.post(f"{t}/items", files={"files": ("big.png", big, "image/png")}),
            None,
        )
    )
    out.append(
        Case(
            "upload limits",
            "lying Content-Length",
            lambda c: _raw(
                c,
                f"POST {t}/items HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data;"
                " boundary=b\r\nContent-Length: 99999999999\r\n\r\n--b\r\n",
            ),
            None,
        )
    )
    out.append(
        Case(
            "upload limits",
            "Content-Length not a number",
            lambda c: _raw(
                c,
                f"POST {t}/items HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data;"
                " boundary=b\r\nContent-Length: lots\r\n\r\n--b\r\n",
            ),
            None,
            protocol=True,
        )
    )
    out.append(
        Case(
            "upload limits",
            "300 files in one request",
            lambda c: c.post(f"{t}/items", files=[("files", (f"{i}.png", b"x", "image/png")) for i in range(300)]),
            None,
        )
    )
    # metadata
    for name, meta in bad_metadata().items():
        try:
            raw = json.dumps(meta)
        except ValueError:
            raw = "{}"
        out.append(
            Case(
                "absurd metadata",
                name,
                lambda c, r=raw: c.post(
                    f"{t}/items", files={"files": ("ok.png", good, "image/png")}, data={"metadata": r}
                ),
                lambda tbl, m=meta: tbl.add([good], metadata=[m]),
            )
        )
        out.append(
            Case(
                "absurd metadata",
                f"update with: {name}",
                lambda c, r=raw: c.patch(
                    f"{t}/items/{item_id}", content=r, headers={"content-type": "application/json"}
                ),
                lambda tbl, m=meta: tbl.update(item_id, m),
            )
        )
    out.append(
        Case(
            "absurd metadata",
            "metadata not JSON",
            lambda c: c.post(
                f"{t}/items", files={"files": ("ok.png", good, "image/png")}, data={"metadata": "{not json"}
            ),
            None,
        )
    )
    out.append(
        Case(
            "absurd metadata",
            "more metadata entries than files",
            lambda c: c.post(
                f"{t}/items",
                files={"files": ("ok.png", good, "image/png")},
                data={"metadata": json.dumps([{"a": 1}, {"a": 2}])},
            ),
            lambda tbl: tbl.add([good], metadata=[{"a": 1}, {"a": 2}]),
        )
    )
    # filters
    for name, where in BAD_FILTERS.items():
        out.append(
            Case(
                "filters (injection, functions)",
                name,
                lambda c, w=where: c.post(f"{t}/search", json={"id": item_id, "k": 3, "where": w}),
                lambda tbl, w=where: tbl.search(item_id).where(w).limit(3).to_list(),
            )
        )
        out.append(
            Case(
                "filters (injection, functions)",
                f"delete where: {name}",
                lambda c, w=where: c.post(f"{t}/delete", json={"where": w}),
                lambda tbl, w=where: tbl.delete(where=w),
            )
        )
        out.append(
            Case(
                "filters (injection, functions)",
                f"count where: {name}",
                lambda c, w=where: c.get(f"{t}/count", params={"where": w}),
                lambda tbl, w=where: tbl.count_rows(w),
            )
        )
    # unknown things
    out += [
        Case(
            "unknown tables and ids",
            "unknown table",
            lambda c: c.get("/tables/nope/stats"),
            lambda tbl: tbl.db.open_table("nope"),
        ),
        Case("unknown tables and ids", "unknown id", lambda c: c.get(f"{t}/items/987654"), lambda tbl: tbl.get(987654)),
        Case(
            "unknown tables and ids",
            "reconstruct unknown id",
            lambda c: c.get(f"{t}/items/987654/image"),
            lambda tbl: tbl.reconstruct(987654),
        ),
        Case(
            "unknown tables and ids",
            "delete unknown id",
            lambda c: c.delete(f"{t}/items/987654"),
            lambda tbl: tbl.delete(987654),
        ),
        Case("unknown tables and ids", "id 0", lambda c: c.get(f"{t}/items/0"), lambda tbl: tbl.get(0)),
        Case("unknown tables and ids", "negative id", lambda c: c.get(f"{t}/items/-5"), lambda tbl: tbl.get(-5)),
        Case("unknown tables and ids", "id 2^70", lambda c: c.get(f"{t}/items/{2**70}"), lambda tbl: tbl.get(2**70)),
        Case(
            "unknown tables and ids", "id not a number", lambda c: c.get(f"{t}/items/abc"), lambda tbl: tbl.get("abc")
        ),
        Case(
            "unknown tables and ids",
            "search by unknown id",
            lambda c: c.post(f"{t}/search", json={"id": 987654}),
            lambda tbl: tbl.search(987654).to_list(),
        ),
        Case(
            "unknown tables and ids",
            "unknown classifier",
            lambda c: c.post(f"{t}/classify", json={"id": item_id, "classifier": "nope"}),
            lambda tbl: tbl.classify(item_id, classifier="nope"),
        ),
        Case("unknown tables and ids", "unknown route", lambda c: c.get("/admin"), None),
        Case("unknown tables and ids", "wrong method", lambda c: c.put(f"{t}/items/{item_id}"), None),
    ]
    # k
    for k in (0, -1, 10**9, "abc", 1.5, None, True, [3]):
        out.append(
            Case(
                "k out of range or wrong type",
                f"k = {k!r}",
                lambda c, k=k: c.post(f"{t}/search", json={"id": item_id, "k": k}),
                lambda tbl, k=k: tbl.search(item_id).limit(k).to_list(),
            )
        )
    out.append(
        Case(
            "k out of range or wrong type",
            "multipart k = -3",
            lambda c: c.post(f"{t}/search", files={"image": ("q.png", good, "image/png")}, data={"k": "-3"}),
            None,
        )
    )
    # vectors
    vectors = {
        "NaN": lambda d: [float("nan")] * d,
        "inf": lambda d: [float("inf")] + [0.0] * (d - 1),
        "wrong dimension": lambda d: [0.1] * (d + 1),
        "empty": lambda d: [],
        "strings": lambda d: ["a"] * d,
        "nested lists": lambda d: [[0.1]] * d,
        "1e6 numbers": lambda d: [0.0] * 1_000_000,
        "all zeros": lambda d: [0.0] * d,
        "huge values": lambda d: [1e308] * d,
    }
    for name, make in vectors.items():
        out.append(
            Case(
                "vectors",
                name,
                lambda c, m=make: c.post(
                    f"{t}/search",
                    content=_json_or_nan({"vector": m(dim), "k": 3}),
                    headers={"content-type": "application/json"},
                ),
                lambda tbl, m=make: tbl.search(_array(m(dim))).to_list(),
            )
        )
    # table names
    for name, bad in BAD_TABLE_NAMES.items():
        out.append(
            Case(
                "table names (path traversal)",
                f"create {name}",
                lambda c, b=bad: c.post("/tables", json={"name": b}),
                lambda tbl, b=bad: tbl.db.create_table(b),
            )
        )
        out.append(
            Case(
                "table names (path traversal)",
                f"open {name}",
                lambda c, b=bad: c.get(f"/tables/{_quote(b)}/stats"),
                lambda tbl, b=bad: tbl.db.open_table(b),
            )
        )
        out.append(
            Case(
                "table names (path traversal)",
                f"drop {name}",
                lambda c, b=bad: c.delete(f"/tables/{_quote(b)}"),
                lambda tbl, b=bad: tbl.db.drop_table(b),
            )
        )
    out.append(
        Case(
            "table names (path traversal)",
            "codec given as a path",
            lambda c: c.post("/tables", json={"name": "x", "codec": "../../etc/passwd"}),
            lambda tbl: tbl.db.create_table("x", codec="/etc/passwd"),
        )
    )
    out.append(
        Case(
            "table names (path traversal)",
            "name of the wrong type",
            lambda c: c.post("/tables", json={"name": 5}),
            lambda tbl: tbl.db.create_table(5),
        )
    )
    out.append(
        Case(
            "table names (path traversal)",
            "create an existing table",
            lambda c: c.post("/tables", json={"name": TABLE}),
            lambda tbl: tbl.db.create_table(TABLE),
        )
    )
    # request bodies
    out += [
        Case(
            "malformed requests",
            "body not JSON",
            lambda c: c.post(f"{t}/search", content=b"{oops", headers={"content-type": "application/json"}),
            None,
        ),
        Case("malformed requests", "JSON array body", lambda c: c.post(f"{t}/search", json=[1, 2]), None),
        Case(
            "malformed requests",
            "both id and vector",
            lambda c: c.post(f"{t}/search", json={"id": 1, "vector": [1]}),
            None,
        ),
        Case("malformed requests", "neither id nor vector", lambda c: c.post(f"{t}/search", json={"k": 3}), None),
        Case(
            "malformed requests",
            "multipart without the image part",
            lambda c: c.post(f"{t}/search", files={"other": ("q.png", good, "image/png")}),
            None,
        ),
        Case(
            "malformed requests",
            "broken multipart",
            lambda c: c.post(
                f"{t}/items", content=b"--xx\r\njunk", headers={"content-type": "multipart/form-data; boundary=xx"}
            ),
            None,
        ),
        Case(
            "malformed requests",
            "quality 0",
            lambda c: c.post(f"{t}/items", files={"files": ("ok.png", good, "image/png")}, data={"quality": "0"}),
            lambda tbl: tbl.add([good], quality=0),
        ),
        Case(
            "malformed requests",
            "quality 99",
            lambda c: c.post(f"{t}/items", files={"files": ("ok.png", good, "image/png")}, data={"quality": "99"}),
            lambda tbl: tbl.add([good], quality=99),
        ),
        Case(
            "malformed requests",
            "quality text",
            lambda c: c.post(f"{t}/items", files={"files": ("ok.png", good, "image/png")}, data={"quality": "best"}),
            None,
        ),
        Case(
            "malformed requests",
            "image format gif",
            lambda c: c.get(f"{t}/items/{item_id}/image", params={"format": "gif"}),
            None,
        ),
        Case(
            "malformed requests",
            "optimize keep_hours -1",
            lambda c: c.post(f"{t}/optimize", params={"keep_hours": -1}),
            None,
        ),
        Case(
            "malformed requests",
            "delete with ids and where",
            lambda c: c.post(f"{t}/delete", json={"ids": [item_id], "where": "id = 1"}),
            lambda tbl: tbl.delete([item_id], where="id = 1"),
        ),
        Case("malformed requests", "delete ids not a list", lambda c: c.post(f"{t}/delete", json={"ids": "1,2"}), None),
        Case("malformed requests", "items of the wrong type", None, lambda tbl: tbl.add(12345)),
        Case("malformed requests", "None as an item", None, lambda tbl: tbl.add([None])),
        Case("malformed requests", "path that does not exist", None, lambda tbl: tbl.add(["/no/such/file.jpg"])),
        Case("malformed requests", "a directory as an image", None, lambda tbl: tbl.add(["/etc"])),
        Case("malformed requests", "search with None", None, lambda tbl: tbl.search(None).to_list()),
        Case("malformed requests", "where not a string", None, lambda tbl: tbl.search(item_id).where(5).to_list()),
        Case(
            "malformed requests",
            "fit a classifier on a missing column",
            lambda c: c.post(f"{t}/classifiers", json={"name": "c", "label": "nope"}),
            lambda tbl: tbl.fit_classifier("c", "nope"),
        ),
        Case(
            "malformed requests",
            "fit a classifier, epochs -1",
            lambda c: c.post(f"{t}/classifiers", json={"name": "c", "label": "label", "epochs": -1}),
            lambda tbl: tbl.fit_classifier("c", "label", epochs=-1),
        ),
    ]
    return out


def _array(values: list):
    """What a Python caller would pass: a float array where numpy makes one, else the list itself."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError):
        return values


def _raw(client: httpx.Client, request: str) -> httpx.Response:
    """Send bytes no well-behaved client would (a lying Content-Length) and read the status and body."""
    import socket

    url = client.base_url
    with socket.create_connection((url.host, url.port), timeout=30) as sock:
        sock.sendall(request.encode())
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return httpx.Response(status, content=body)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def _json_or_nan(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()  # NaN/Infinity tokens, as a careless client sends


def digest(db_path: Path, codec) -> str:
    """One hash of everything stored: table names, schema, every row (id, metadata, latent bytes)."""
    import mostore

    h = hashlib.sha256()
    db = mostore.connect(db_path, codec=codec)
    for name in db.table_names():
        tbl = db.open_table(name)
        h.update(name.encode())
        h.update(str(tbl._lt.schema).encode())
        rows = tbl._lt.to_arrow().sort_by("id").to_pylist()
        for row in rows:
            h.update(repr(sorted((k, v) for k, v in row.items() if k != "latent")).encode())
            h.update(hashlib.sha256(row["latent"]).digest())
    return h.hexdigest()


def run(workdir: Path, codec_path: str) -> dict:
    """Try every case over HTTP and through the API; return per-case outcomes and a summary."""
    import mostore
    from mostore.codec.model import Codec
    from mostore.errors import MostoreError

    codec = Codec.load(codec_path)
    db_path = workdir / "db"
    tbl = mostore.connect(db_path, codec=codec).create_table(TABLE, exist_ok=True)
    ids = tbl.add([test_image(1, j) for j in range(6)], metadata=[{"label": "ab"[j % 2], "n": j} for j in range(6)])
    item_id = ids[0]
    results = []
    proc, url = start_server(db_path, codec_path, max_upload_bytes=MAX_UPLOAD)
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            for case in cases(item_id, tbl.embedder.dim):
                if case.http is not None:
                    before = digest(db_path, codec)
                    try:
                        r = case.http(client)
                        status = r.status_code
                        try:
                            body = r.json()
                            typed = isinstance(body, dict) and {"error", "message"} <= set(body)
                        except ValueError:
                            typed = False
                    except httpx.HTTPError as exc:
                        status, typed = f"connection: {type(exc).__name__}", False
                    changed = digest(db_path, codec) != before
                    ok = isinstance(status, int) and 400 <= status < 500 and (typed or case.protocol) and not changed
                    results.append(
                        {
                            "category": case.category,
                            "case": case.name,
                            "via": "http",
                            "status": status,
                            "protocol": case.protocol,
                            "typed": typed,
                            "data_changed": changed,
                            "ok": ok,
                        }
                    )
                if case.api is not None:
                    local = mostore.connect(db_path, codec=codec).open_table(TABLE)
                    before = digest(db_path, codec)
                    try:
                        case.api(local)
                        outcome, typed = "no error", False
                    except MostoreError as exc:
                        outcome, typed = type(exc).__name__, True
                    except Exception as exc:  # noqa: BLE001 - an untyped error is what this counts
                        outcome, typed = f"untyped {type(exc).__name__}: {str(exc)[:120]}", False
                    changed = digest(db_path, codec) != before
                    results.append(
                        {
                            "category": case.category,
                            "case": case.name,
                            "via": "api",
                            "status": outcome,
                            "typed": typed,
                            "data_changed": changed,
                            "ok": typed and not changed,
                        }
                    )
            alive = client.get("/health").status_code == 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(10)
    return {"cases": results, "summary": summarise(results), "server_alive_after": alive}


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for cat in dict.fromkeys(r["category"] for r in results):
        rs = [r for r in results if r["category"] == cat]
        http = [r for r in rs if r["via"] == "http"]
        api = [r for r in rs if r["via"] == "api"]
        rows.append(
            {
                "category": cat,
                "http_cases": len(http),
                "http_4xx": sum(isinstance(r["status"], int) and 400 <= r["status"] < 500 for r in http),
                "http_5xx": sum(isinstance(r["status"], int) and r["status"] >= 500 for r in http),
                "api_cases": len(api),
                "api_typed": sum(r["typed"] for r in api),
                "data_changed": sum(r["data_changed"] for r in rs),
            }
        )
    return rows


def print_table(out: dict) -> None:
    print(f"{'category':34s} {'HTTP':>5s} {'4xx':>5s} {'5xx':>4s} {'API':>5s} {'typed':>5s} {'changed':>7s}")
    for r in out["summary"]:
        print(
            f"{r['category']:34s} {r['http_cases']:5d} {r['http_4xx']:5d} {r['http_5xx']:4d} "
            f"{r['api_cases']:5d} {r['api_typed']:5d} {r['data_changed']:7d}"
        )
    bad = [r for r in out["cases"] if not r["ok"]]
    for r in bad:
        print(f"  NOT OK: [{r['via']}] {r['category']} / {r['case']}: {r['status']} (changed: {r['data_changed']})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--codec", default="default", help="shipped weights name, a checkpoint path, or 'tiny'")
    ap.add_argument("--out", type=Path, default=RESULTS / "hostile.json")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mostore-hostile-"))
    try:
        out = run(work, _codec_arg(args.codec, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1, default=str))
    ok = all(r["ok"] for r in out["cases"]) and out["server_alive_after"]
    print(f"wrote {args.out}; {len(out['cases'])} cases, {'all passed' if ok else 'SOME FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
