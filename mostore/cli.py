"""The ``mostore`` command: one subcommand per Table / Database method.

    mostore ingest ./photos --db photos.mostore --table photos
    mostore search query.jpg --db photos.mostore --table photos -k 5 --where "label = 'cat'"
    mostore reconstruct 12 --db photos.mostore --table photos -o out.png
    mostore info --db photos.mostore
    mostore serve --db photos.mostore --port 8000
    mostore demo

``--db`` takes a folder or an ``http://`` URL of a running server. Exit codes: 0 ok,
1 a mostore error (message on stderr), 2 bad command line, 3 some files were skipped,
4 ``check`` found problems.
"""

from __future__ import annotations

import argparse
import logging
import json
import sys
from pathlib import Path

from mostore.errors import MostoreError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm"}
SAMPLES = Path(__file__).parent / "samples"
INGEST_BATCH = 32


def _connect(args):
    import mostore

    return mostore.connect(args.db, api_key=getattr(args, "api_key", None))


def _print(args, obj, text: str) -> None:
    print(json.dumps(obj, indent=2, default=str) if getattr(args, "json", False) else text)


def cmd_ingest(args) -> int:
    from tqdm import tqdm

    db = _connect(args)
    table = db.create_table(args.table, quality=args.quality, exist_ok=True)
    root = Path(args.dir)
    if not root.is_dir():
        raise SystemExit(f"mostore ingest: {root} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    added, skipped = [], []
    bar = tqdm(total=len(files), unit="img", disable=args.quiet or args.json, desc="ingest")
    for start in range(0, len(files), args.batch):
        chunk = files[start : start + args.batch]
        metas = [{"path": str(f.relative_to(root)), **({"label": f.parent.name} if args.label_from_dir else {})} for f in chunk]
        try:
            added += table.add([str(f) for f in chunk], metadata=metas)
        except MostoreError:
            for f, m in zip(chunk, metas):  # find the bad files; keep the good ones
                try:
                    added += table.add([str(f)], metadata=[m])
                except MostoreError as exc:
                    skipped.append({"file": str(f), "error": type(exc).__name__, "message": str(exc)})
                    if not args.json:
                        tqdm.write(f"skipped {f}: {exc}", file=sys.stderr)
        bar.update(len(chunk))
    bar.close()
    _print(args, {"added": len(added), "skipped": skipped, "table": args.table},
           f"added {len(added)} images to {args.table!r}; skipped {len(skipped)}")
    return 3 if skipped else 0


def cmd_search(args) -> int:
    table = _connect(args).open_table(args.table)
    query = int(args.query) if args.query.isdigit() and not Path(args.query).exists() else args.query
    builder = table.search(query).limit(args.k)
    if args.where:
        builder = builder.where(args.where)
    hits = builder.to_list()
    lines = [f"{h['id']:>8}  {h['score']:.4f}  {json.dumps(h['metadata'])}" for h in hits]
    _print(args, hits, "\n".join(["      id  score   metadata", *lines]))
    return 0


def cmd_reconstruct(args) -> int:
    image = _connect(args).open_table(args.table).reconstruct(args.id)
    image.save(args.output)
    _print(args, {"id": args.id, "output": args.output, "size": image.size}, f"wrote {args.output} {image.size[0]}x{image.size[1]}")
    return 0


def cmd_info(args) -> int:
    db = _connect(args)
    names = [args.table] if args.table else db.table_names()
    stats = [db.open_table(n).stats() for n in names]
    lines = [f"{s['table']}: {s['rows']} items, {s['latent_bytes']} latent bytes, {s['bpp']:.3f} bpp, "
             f"index {s['index_kind']} ({s['index_count']}), codec {s['codec_id']} q{s['quality']}" for s in stats]
    _print(args, stats, "\n".join(lines) or "no tables")
    return 0


def cmd_delete(args) -> int:
    table = _connect(args).open_table(args.table)
    n = table.delete(where=args.where) if args.where else table.delete(args.ids)
    _print(args, {"deleted": n}, f"deleted {n}")
    return 0


def _progress(args, table, desc: str) -> dict:
    """kwargs giving a local table's long call a progress bar on stderr (none for --json, --quiet or a server)."""
    from tqdm import tqdm

    from mostore.store import Table

    if not isinstance(table, Table) or args.json or getattr(args, "quiet", False):
        return {}
    bar = tqdm(total=table.count_rows(), unit="item", desc=desc, file=sys.stderr, leave=False)
    return {"progress": bar.update}


def cmd_reindex(args) -> int:
    table = _connect(args).open_table(args.table)
    result = table.reindex(**_progress(args, table, "reindex"))
    _print(args, result, f"indexed {result['indexed']} of {result['rows']} rows ({result['kind']})")
    return 0


def cmd_fit_classifier(args) -> int:
    table = _connect(args).open_table(args.table)
    info = table.fit_classifier(args.name, args.label, epochs=args.epochs)
    acc = "n/a" if info["val_accuracy"] is None else f"{info['val_accuracy']:.3f}"
    _print(args, info, f"classifier {info['name']!r}: {len(info['classes'])} classes, {info['n_train']} train /"
           f" {info['n_val']} validation items, validation accuracy {acc}")
    return 0


def cmd_classify(args) -> int:
    table = _connect(args).open_table(args.table)
    if args.all:
        result = table.classify_all(args.classifier)
        _print(args, result, f"wrote predictions to column {result['column']!r}: {result['counts']}")
        return 0
    if args.query is None:
        raise SystemExit("mostore classify: give an image path or an item id, or --all")
    query = int(args.query) if args.query.isdigit() and not Path(args.query).exists() else args.query
    result = table.classify(query, classifier=args.classifier)
    _print(args, result, f"{result['label']} ({result['score']:.3f})")
    return 0


def cmd_check(args) -> int:
    table = _connect(args).open_table(args.table)
    report = table.check(**_progress(args, table, "check"))
    text = (f"{report['rows']} rows, {len(report['damaged'])} damaged, index {report['index_count']} "
            f"(missing {report['index_missing']}, extra {report['index_extra']}): {'ok' if report['ok'] else 'PROBLEMS'}")
    for d in report["damaged"]:
        text += f"\n  item {d['id']}: {d['error']}: {d['message']}"
    _print(args, report, text)
    return 0 if report["ok"] else 4


def cmd_optimize(args) -> int:
    from datetime import timedelta

    result = _connect(args).open_table(args.table).optimize(keep_versions_for=timedelta(hours=args.keep_hours))
    _print(args, result, f"fragments {result['fragments_before']} -> {result['fragments_after']}, version {result['version']}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from server.app import Settings, create_app

    # one JSON line per request on stderr (request id, route, status, ms); uvicorn's access log is off
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    http_log = logging.getLogger("mostore.http")
    http_log.addHandler(handler)
    http_log.setLevel(logging.INFO if args.log_requests else logging.WARNING)
    http_log.propagate = False
    app = create_app(Settings.from_env(args.db))
    print(f"mostore serving {args.db} at http://{args.host}:{args.port}/  (API docs at /docs)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_demo(args) -> int:
    import mostore

    db = mostore.connect(args.db)
    table = db.create_table("samples", exist_ok=True)
    if table.count_rows() == 0:
        files = sorted(p for p in SAMPLES.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        ids = table.add([str(f) for f in files], metadata=[{"label": f.parent.name, "file": f.name} for f in files])
        print(f"built {args.db}: table 'samples' with {len(ids)} images ({table.stats()['bpp']:.3f} bpp)")
    else:
        print(f"using {args.db}: table 'samples' with {table.count_rows()} images")
    hits = table.search(1).limit(3).to_list()
    print("nearest to item 1:", ", ".join(f"#{h['id']} {h['metadata'].get('label')} ({h['score']:.3f})" for h in hits))
    if args.no_serve:
        return 0
    args.host = args.host or "127.0.0.1"
    return cmd_serve(args)


def cmd_train(args) -> int:
    from mostore.codec import train

    return train.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mostore", description="A compressed-domain vector database for media.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def db_args(sp, table=True):
        sp.add_argument("--db", default="mostore.db", help="database folder or http:// URL (default: mostore.db)")
        sp.add_argument("--api-key", default=None, help="API key for a remote server")
        if table:
            sp.add_argument("--table", "-t", required=True, help="table name")
        sp.add_argument("--json", action="store_true", help="print JSON for scripts")

    sp = add("ingest", cmd_ingest, "encode every image under a folder (recursively) into a table")
    sp.add_argument("dir", help="folder of images")
    db_args(sp)
    sp.add_argument("--quality", type=int, default=None, help="codec quality level for a new table")
    sp.add_argument("--batch", type=int, default=INGEST_BATCH, help="images per commit")
    sp.add_argument("--label-from-dir", action="store_true", help="store the parent folder name as 'label'")
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sp = add("search", cmd_search, "find the nearest items to an image file, a stored id")
    sp.add_argument("query", help="an image path or a stored item id")
    db_args(sp)
    sp.add_argument("-k", type=int, default=10, help="number of hits")
    sp.add_argument("--where", default=None, help="metadata filter, e.g. \"label = 'cat'\"")

    sp = add("reconstruct", cmd_reconstruct, "decode a stored item back to an image file")
    sp.add_argument("id", type=int, help="item id")
    db_args(sp)
    sp.add_argument("-o", "--output", required=True, help="output image path (format from the suffix)")

    sp = add("info", cmd_info, "show tables with their sizes, bit rates and indexes")
    db_args(sp, table=False)
    sp.add_argument("--table", "-t", default=None, help="only this table")

    sp = add("delete", cmd_delete, "delete items by id or by filter")
    sp.add_argument("ids", type=int, nargs="*", help="item ids")
    db_args(sp)
    sp.add_argument("--where", default=None, help="delete every item matching this filter")

    sp = add("reindex", cmd_reindex, "rebuild a table's vector index from its stored latents")
    db_args(sp)
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sp = add("check", cmd_check, "verify every stored bitstream and the index (exit 4 on problems)")
    db_args(sp)
    sp.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sp = add("optimize", cmd_optimize, "compact the table's files and drop old versions")
    db_args(sp)
    sp.add_argument("--keep-hours", type=float, default=24 * 7, help="keep versions newer than this (default 7 days)")

    sp = add("fit-classifier", cmd_fit_classifier, "train a classifier on the stored latents of labelled items")
    sp.add_argument("name", help="classifier name")
    db_args(sp)
    sp.add_argument("--label", default="label", help="metadata column holding the labels (default: label)")
    sp.add_argument("--epochs", type=int, default=30, help="training epochs")

    sp = add("classify", cmd_classify, "classify an image or a stored item from its latents")
    sp.add_argument("query", nargs="?", default=None, help="an image path or a stored item id")
    db_args(sp)
    sp.add_argument("--classifier", "-c", required=True, help="classifier name")
    sp.add_argument("--all", action="store_true", help="classify every item, writing <classifier>_pred")

    sp = add("serve", cmd_serve, "run the HTTP API and web gallery (uvicorn)")
    sp.add_argument("--db", default="mostore.db", help="database folder")
    sp.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    sp.add_argument("--port", type=int, default=8000, help="port")
    sp.add_argument("--quiet", dest="log_requests", action="store_false",
                    help="no per-request JSON log lines on stderr")

    sp = add("demo", cmd_demo, "build a small store from bundled sample images and serve it")
    sp.add_argument("--db", default="demo.mostore", help="database folder (default demo.mostore)")
    sp.add_argument("--host", default="127.0.0.1", help="bind address")
    sp.add_argument("--port", type=int, default=8000, help="port")
    sp.add_argument("--no-serve", action="store_true", help="build the store, run one search, exit")
    sp.add_argument("--quiet", dest="log_requests", action="store_false",
                    help="no per-request JSON log lines on stderr")

    sp = add("train", cmd_train, "train the codec (see python -m mostore.codec.train --help)")
    sp.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the trainer")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except MostoreError as exc:
        print(f"mostore {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
