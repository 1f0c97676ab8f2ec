"""Database / Table over lancedb: the one implementation of mostore's data model.

A database is a folder::

    photos.mostore/
      photos.lance/              the Lance table: the source of truth, one row per item
      _mostore/photos/
        table.json               codec name + id, quality (written before the Lance table)
        next_id.json             the id counter (ids are never reused), guarded by lock
        index.faiss, index.json  the FAISS index and the table version it covers (derived)

Row schema: ``id`` int64, ``latent`` binary (the whole bitstream), ``width``, ``height``,
``mode``, ``quality``, ``nbytes``, ``codec_id``, ``created_at``, then one column per user
metadata key (created on first use, typed from the values).

>>> import mostore, numpy as np
>>> db = mostore.connect(getfixture("tmp_path") / "demo.mostore", codec=getfixture("tiny_codec"))
>>> tbl = db.create_table("photos")
>>> tbl.add([np.zeros((32, 32, 3), np.uint8)], metadata=[{"label": "black"}])
[1]
>>> tbl.get(1)["metadata"]
{'label': 'black'}
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import re
import shutil
import threading
import time
import warnings
import weakref
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import lancedb
import numpy as np
import pyarrow as pa
import torch

from mostore import data, filters
from mostore.codec.model import Codec
from mostore.errors import (
    AlreadyExistsError,
    CodecMismatchError,
    ConflictError,
    CorruptBitstreamError,
    InvalidInputError,
    MetadataError,
    MostoreError,
    NotFoundError,
)
from mostore.heads import EMBED_BATCH, LatentClassifier, fit_latent_classifier, load_embedder
from mostore.index import IndexConfig, IndexMeta, VectorIndex

if TYPE_CHECKING:
    from mostore.query import Query

TABLE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
SIDE = "_mostore"
#: rows decoded per batch when the index catches up with the table
SYNC_BATCH = 256
#: indexes smaller than this are written after every change; larger ones at most every interval
INDEX_SAVE_ALWAYS_BYTES = 32 * 1024 * 1024
INDEX_SAVE_INTERVAL_S = 30.0
DEFAULT_CLASSIFIER_EPOCHS = 30
COMMIT_RETRIES = 8
#: a table whose last commit is older than this answers version checks from a stat of its folder
VERSION_STAMP_MARGIN_S = 2.0
#: bound of each of lance's caches (index, metadata), shared by every table of the process
LANCE_CACHE_BYTES = 128 * 1024 * 1024
#: filters whose matching ids are kept (per table version) for the queries that follow
ALLOWED_CACHE_FILTERS = 16
#: tables at least this large get B-tree indexes on id and metadata columns at optimize()
ID_INDEX_MIN_ROWS = 10_000

log = logging.getLogger("mostore")

_BASE_FIELDS = [
    pa.field("id", pa.int64(), nullable=False),
    pa.field("latent", pa.binary()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("mode", pa.string()),
    pa.field("quality", pa.int32()),
    pa.field("nbytes", pa.int64()),
    pa.field("codec_id", pa.string()),
    pa.field("created_at", pa.timestamp("us", tz="UTC")),
]
BASE_COLUMNS = [f.name for f in _BASE_FIELDS]
#: system columns a where-filter may use
FILTERABLE_BASE = {"id": "numeric", "width": "numeric", "height": "numeric", "quality": "numeric",
                   "nbytes": "numeric", "mode": "string", "codec_id": "string"}


def check_table_name(name: Any) -> str:
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise InvalidInputError(
            f"table name {name!r} is not allowed: 1-64 letters, digits, _ or -, not starting with -"
        )
    return name


def check_id(item_id: Any) -> int:
    if isinstance(item_id, (bool, np.bool_)) or not isinstance(item_id, (int, np.integer)):
        raise InvalidInputError(f"an item id is an int, not {type(item_id).__name__}")
    if not 0 < int(item_id) < 2**63:
        raise InvalidInputError(f"item id {item_id} is out of range")
    return int(item_id)


_SESSION = None


def _session():
    """The process's lancedb session, with caches bounded to LANCE_CACHE_BYTES each.

    With lance's defaults, RSS grew by ~0.6 GiB over 1,500 appends (every version's manifest
    stays cached); bounded, it stays flat (measured by benchmarks/ingest.py --rss)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = lancedb.Session(index_cache_size_bytes=LANCE_CACHE_BYTES,
                                   metadata_cache_size_bytes=LANCE_CACHE_BYTES)
    return _SESSION


def _fragments(stats) -> int | None:
    """Fragment count from lancedb's table stats (a dict in lancedb 0.40, an object in some releases)."""
    frag = stats.get("fragment_stats") if isinstance(stats, dict) else getattr(stats, "fragment_stats", None)
    count = frag.get("num_fragments") if isinstance(frag, dict) else getattr(frag, "num_fragments", None)
    return int(count) if count is not None else None


def _retry(fn, what: str):
    """Run a Lance write, retrying optimistic-commit conflicts with backoff."""
    for attempt in range(COMMIT_RETRIES):
        try:
            return fn()
        except MostoreError:
            raise
        except Exception as exc:  # lance raises OSError/RuntimeError for commit conflicts
            text = str(exc).lower()
            if "conflict" not in text and "retryable" not in text and "concurrent" not in text:
                raise
            time.sleep(0.02 * 2**attempt * (1 + np.random.random()))
    raise ConflictError(f"{what} lost {COMMIT_RETRIES} commit races with concurrent writers; try again")


class Database:
    """A folder of mostore tables. Use :func:`mostore.connect` to get one."""

    def __init__(
        self, path: str | Path, *, codec: Codec | None = None, index: IndexConfig | None = None,
        max_pixels: int = data.MAX_PIXELS,
    ):
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.path.mkdir(parents=True, exist_ok=True)
        # interval 0: every read sees the latest committed version (other processes write too);
        # one bounded cache session per process (lance's default caches grow with every version)
        self._db = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0), session=_session())
        self._codecs: dict[str, Codec] = {}
        if codec is not None:
            self._codecs[codec.name] = codec
        self._default_codec = codec
        self.index_config = index or IndexConfig()
        self._tables: dict[str, Table] = {}
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return f"mostore.Database({str(self.path)!r})"

    def _codec(self, name: str | Codec | None) -> Codec:
        if isinstance(name, Codec):
            self._codecs.setdefault(name.name, name)
            return name
        if name is None:
            if self._default_codec is not None:
                return self._default_codec
            name = "default"
        if name not in self._codecs:
            self._codecs[name] = Codec.load(name)
        return self._codecs[name]

    def table_names(self) -> list[str]:
        names: list[str] = []
        token = None
        while True:  # the listing may come in pages
            page = self._db.list_tables(page_token=token)
            names += list(page.tables)
            token = page.page_token
            if not token:
                break
        return sorted(n for n in names if (self.path / SIDE / n / "table.json").is_file())

    def create_table(
        self, name: str, *, codec: str | Codec | None = None, quality: int | None = None, exist_ok: bool = False
    ) -> "Table":
        """Create an empty table coded with ``codec`` (weights name or Codec) at ``quality``."""
        check_table_name(name)
        with self._lock:
            if name in self.table_names():
                if exist_ok:
                    return self.open_table(name)
                raise AlreadyExistsError(f"table {name!r} exists already")
            c = self._codec(codec)
            q = c._check_quality(quality) if quality is not None else c.quality
            side = self.path / SIDE / name
            side.mkdir(parents=True, exist_ok=True)
            (side / "table.json").write_text(json.dumps({"codec": c.name, "codec_id": c.id, "quality": q}))
            self._db.create_table(name, schema=pa.schema(_BASE_FIELDS), mode="overwrite")
            for stale in ("index.faiss", "index.json", "next_id.json"):
                (side / stale).unlink(missing_ok=True)
            self._tables.pop(name, None)
            return self.open_table(name)

    def open_table(self, name: str) -> "Table":
        check_table_name(name)
        with self._lock:
            if name in self._tables:
                return self._tables[name]
            side = self.path / SIDE / name
            if name not in self.table_names():
                raise NotFoundError(f"no table {name!r} in {self.path}; tables: {self.table_names()}")
            info = json.loads((side / "table.json").read_text())
            try:
                codec = self._codec(info["codec"])
            except NotFoundError:
                codec = None
            if codec is None or codec.id != info["codec_id"]:
                # the weights under that name changed (a newer default): find the table's own by id
                codec = next((c for c in self._codecs.values() if c.id == info["codec_id"]), None) or Codec.find(
                    info["codec_id"]
                ) or codec
            if codec is None or codec.id != info["codec_id"]:
                raise CodecMismatchError(
                    f"table {name!r} was made with codec {info['codec_id']} ({info['codec']}); no weights with"
                    " that id are available here, and decoding with other weights would be wrong"
                )
            table = Table(self, name, self._db.open_table(name), codec, int(info["quality"]), side)
            self._tables[name] = table
            return table

    def drop_table(self, name: str) -> None:
        check_table_name(name)
        with self._lock:
            if name not in self.table_names():
                raise NotFoundError(f"no table {name!r} in {self.path}")
            self._tables.pop(name, None)
            self._db.drop_table(name)
            shutil.rmtree(self.path / SIDE / name, ignore_errors=True)


class Table:
    """One collection of coded images. Obtain it from :meth:`Database.create_table` / ``open_table``."""

    def __init__(self, db: Database, name: str, lance_table, codec: Codec, quality: int, side: Path):
        self.db = db
        self.name = name
        self._lt = lance_table
        self.codec = codec
        self.quality = quality
        self._side = side
        # the learned embedding shipped for this codec id, else the fixed pooling (older codecs)
        self.embedder = load_embedder(codec)
        self.reindexed_from: str | None = None  # set when an index of another embedder was replaced
        self.index_config = db.index_config
        self._index: VectorIndex | None = None
        self._index_version = -1
        self._index_saved_at = 0.0
        self._classifiers: dict[str, tuple] = {}
        self._index_dirty = False
        self._lock = threading.RLock()
        self._versions_dir = db.path / f"{name}.lance" / "_versions"
        self._version_stamp: int | None = None
        self._cached_version = -1
        self._ds = None  # (version, lance dataset) reused while the version stands
        self._schema_cache = None  # (version, schema)
        self._allowed_cache: dict[tuple[str, int], np.ndarray] = {}  # (filter sql, version) -> ids
        atexit.register(_flush_at_exit, weakref.ref(self))

    def __repr__(self) -> str:
        return f"mostore.Table({self.name!r}, rows={self.count_rows()})"

    # ---- reading -------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The latest committed version (by any process).

        Asking Lance costs about a millisecond; every commit adds a file to the table's
        ``_versions`` folder, so while that folder's mtime is unchanged the last answer stands.
        A recent mtime is never trusted (a coarse clock could hide a second commit in the same
        tick): within VERSION_STAMP_MARGIN_S of a commit every call asks Lance."""
        try:
            stamp = os.stat(self._versions_dir).st_mtime_ns
        except OSError:
            stamp = None
        recent = stamp is None or time.time_ns() - stamp < VERSION_STAMP_MARGIN_S * 1e9
        if recent or stamp != self._version_stamp:
            self._cached_version = int(self._lt.version)
            self._version_stamp = stamp
        return self._cached_version

    def _dataset(self):
        version = self.version
        if self._ds is None or self._ds[0] != version:
            self._ds = (version, self._lt.to_lance())
        return self._ds[1]

    def _scan(self, columns: list[str], where: str | None = None) -> pa.Table:
        return self._dataset().to_table(columns=columns, filter=where)

    def columns(self) -> dict[str, str]:
        """Filterable columns -> "numeric" | "string" | "bool" (system + user metadata)."""
        out = dict(FILTERABLE_BASE)
        for f in self._schema():
            if f.name in BASE_COLUMNS:
                continue
            out[f.name] = _kind(f.type)
        return out

    def metadata_columns(self) -> list[str]:
        return [f.name for f in self._schema() if f.name not in BASE_COLUMNS]

    def _schema(self) -> pa.Schema:
        """The table's schema, asked of Lance once per version (a column is added by a commit)."""
        version = self.version
        if self._schema_cache is None or self._schema_cache[0] != version:
            self._schema_cache = (version, self._lt.schema)
        return self._schema_cache[1]

    def _sql(self, where: str) -> str:
        return filters.to_sql(where, self.columns())

    def count_rows(self, where: str | None = None) -> int:
        return int(self._lt.count_rows(self._sql(where) if where else None))

    def _rows(self, ids: Sequence[int], columns: list[str]) -> dict[int, dict]:
        if not len(ids):
            return {}
        out: dict[int, dict] = {}
        for start in range(0, len(ids), 1000):
            chunk = ", ".join(str(int(i)) for i in ids[start : start + 1000])
            for row in self._scan(columns, f"id IN ({chunk})").to_pylist():
                out[row["id"]] = row
        return out

    def get(self, item_id: int) -> dict:
        """Metadata and sizes of one item: id, width, height, mode, quality, nbytes, bpp, ..."""
        item_id = check_id(item_id)
        cols = [c for c in BASE_COLUMNS if c != "latent"] + self.metadata_columns()
        row = self._rows([item_id], cols).get(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id} in table {self.name!r}")
        return self._describe(row)

    def _describe(self, row: dict) -> dict:
        meta = {k: row[k] for k in self.metadata_columns() if row.get(k) is not None}
        out = {k: row[k] for k in BASE_COLUMNS if k in row and k != "latent"}
        out["created_at"] = row["created_at"].isoformat() if row.get("created_at") else None
        out["bpp"] = 8.0 * row["nbytes"] / (row["width"] * row["height"])
        out["metadata"] = meta
        return out

    def items(self, where: str | None = None, *, offset: int = 0, limit: int = 50) -> list[dict]:
        """A page of items (newest first), optionally filtered: what :meth:`get` returns for each.

        Reads the id column to order the page, then only the page's rows (never the latents)."""
        for name, value, top in (("offset", offset, 2**62), ("limit", limit, 1000)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= top:
                raise InvalidInputError(f"{name} must be an int in 0..{top}, not {value!r}")
        ids = self._scan(["id"], self._sql(where) if where else None)["id"].to_numpy()
        page = np.sort(ids)[::-1][offset : offset + limit]
        cols = [c for c in BASE_COLUMNS if c != "latent"] + self.metadata_columns()
        rows = self._rows(page.tolist(), cols)
        return [self._describe(rows[i]) for i in page.tolist() if i in rows]

    def latent_bytes(self, item_id: int) -> bytes:
        """The stored bitstream of one item, exactly as written."""
        item_id = check_id(item_id)
        row = self._rows([item_id], ["id", "latent"]).get(item_id)
        if row is None:
            raise NotFoundError(f"no item {item_id} in table {self.name!r}")
        return row["latent"]

    def latents(self, item_id: int) -> torch.Tensor:
        """ŷ of one item (entropy decode only, no pixels)."""
        return self.codec.latents(self._checked(self.latent_bytes(item_id), item_id))

    def reconstruct(self, item_id: int, *, data: bytes | None = None):
        """The image decoded from the stored latents (PIL.Image).

        ``data``: the item's bytes when the caller has just read them with ``latent_bytes``
        (saves a second row read); they are checked like the stored ones."""
        blob = self.latent_bytes(item_id) if data is None else data
        return self.codec.decode(self._checked(blob, item_id))

    def _checked(self, blob: bytes, item_id: int) -> bytes:
        try:
            header = self.codec.header(blob)
        except CorruptBitstreamError as exc:
            raise CorruptBitstreamError(f"item {item_id} of table {self.name!r}: {exc}") from exc
        if header.codec_id != self.codec.id:
            raise CodecMismatchError(
                f"item {item_id} was coded by codec {header.codec_id}; table {self.name!r} uses {self.codec.id}"
            )
        return blob

    def size(self) -> tuple[int, int]:
        """(rows, bytes of stored latents): reads one small column, not the latents."""
        t = self._scan(["nbytes"])
        return t.num_rows, int(pa.compute.sum(t["nbytes"]).as_py() or 0)

    def stats(self) -> dict:
        """Rows, bytes of latents, bits per pixel, index kind and size, codec id."""
        t = self._scan(["nbytes", "width", "height"])
        nbytes = int(pa.compute.sum(t["nbytes"]).as_py() or 0)
        pixels = int(np.sum(np.asarray(t["width"], dtype=np.int64) * np.asarray(t["height"], dtype=np.int64)))
        index = self._sync_index()
        index_file = self._side / "index.faiss"
        return {
            "table": self.name,
            "rows": t.num_rows,
            "latent_bytes": nbytes,
            "bytes_per_item": nbytes / t.num_rows if t.num_rows else 0.0,
            "pixels": pixels,
            "bpp": 8.0 * nbytes / pixels if pixels else 0.0,
            "index_kind": index.kind,
            "index_count": len(index),
            "index_bytes": index_file.stat().st_size if index_file.exists() else 0,
            "embedding_dim": self.embedder.dim,
            "embedder": self.embedder.id,
            "reindexed_from": self.reindexed_from,
            "codec": self.codec.name,
            "codec_id": self.codec.id,
            "quality": self.quality,
            "version": self.version,
        }

    # ---- writing -------------------------------------------------------------------------

    def add(self, items, metadata=None, *, quality: int | None = None) -> list[int]:
        """Encode and store images; returns their new ids.

        ``items``: a list of paths, bytes, PIL images or uint8 arrays (or one of them).
        ``metadata``: None, one dict per item, or one dict for a single item. All items are
        checked and encoded before anything is written; the write is one Lance commit.
        """
        if isinstance(items, (str, Path, bytes, bytearray, np.ndarray)) or hasattr(items, "getpixel"):
            items = [items]
            if isinstance(metadata, dict):
                metadata = [metadata]
        if not isinstance(items, (list, tuple)):
            raise InvalidInputError(f"items must be a list of images, not {type(items).__name__}")
        if metadata is None:
            metadata = [{}] * len(items)
        if isinstance(metadata, dict) or not isinstance(metadata, (list, tuple)):
            raise MetadataError("metadata must be a list with one dict per item")
        if len(metadata) != len(items):
            raise MetadataError(f"{len(items)} items but {len(metadata)} metadata entries")
        metas = [data.check_metadata(m) for m in metadata]
        q = self.codec._check_quality(quality) if quality is not None else self.quality
        self._check_types(metas)  # fail fast, before any encoding
        if not items:
            return []
        blobs, sizes, modes, latents, vec_parts = [], [], [], [], []
        for item in items:
            image = data.load_image(item, self.db.max_pixels)
            blob, y_hat = self.codec.encode_with_latents(image, q)
            del image
            header = self.codec.header(blob)
            blobs.append(blob)
            latents.append(y_hat)
            sizes.append((header.width, header.height))
            modes.append(header.mode)
            # embed as we go, a forward pass at a time: a long add keeps bytes and vectors, not latents
            if len(latents) == EMBED_BATCH:
                vec_parts.append(self.embedder.batch(latents))
                latents = []
        if latents:
            vec_parts.append(self.embedder.batch(latents))
        vecs = np.concatenate(vec_parts)  # before the lock: the embedding is the costly part
        with self._lock:
            self._add_columns(self._check_types(metas))  # again: another writer may have added columns
            ids = self._allocate_ids(len(items))
            now = datetime.now(timezone.utc)
            columns: dict[str, pa.Array] = {
                "id": pa.array(ids, pa.int64()),
                "latent": pa.array(blobs, pa.binary()),
                "width": pa.array([s[0] for s in sizes], pa.int32()),
                "height": pa.array([s[1] for s in sizes], pa.int32()),
                "mode": pa.array(modes, pa.string()),
                "quality": pa.array([q] * len(items), pa.int32()),
                "nbytes": pa.array([len(b) for b in blobs], pa.int64()),
                "codec_id": pa.array([self.codec.id] * len(items), pa.string()),
                "created_at": pa.array([now] * len(items), pa.timestamp("us", tz="UTC")),
            }
            schema = {f.name: f.type for f in self._lt.schema}
            for key in sorted({k for m in metas for k in m}):
                if key in schema:  # a key with only None values and no column yet stays absent
                    columns[key] = pa.array([m.get(key) for m in metas], schema[key])
            batch = pa.table(columns)
            index = self._sync_index()
            # the version the index covers, not a fresh read: another process may commit in between,
            # and our index would then claim a version whose rows it lacks
            before = self._index_version
            _retry(lambda: self._lt.add(batch), "add")
            self._after_commit(index, before, lambda: index.add(np.asarray(ids), vecs))
        return ids

    def _after_commit(self, index: VectorIndex, before: int, change) -> None:
        """Apply a committed write to the index and save it.

        The Lance commit is the write; the index is derived. If updating or saving it fails, the
        write still stands (it must not be reported as failed): the index is dropped from memory
        and the next read catches up from the table."""
        try:
            change()
            self._save_index(index, self._version_after(before), force=False)
        except Exception as exc:  # noqa: BLE001 - any failure here leaves a correct table
            log.warning("table %r: index update after a commit failed (%s: %s); it will catch up on next use",
                        self.name, type(exc).__name__, exc)
            self._index, self._index_version = None, -1

    def _version_after(self, before: int) -> int:
        """The version our own commit made if no one else wrote in between, else -1 (catch up later)."""
        now = self.version
        return now if now == before + 1 else -1

    def _check_types(self, metas: list[dict]) -> dict[str, pa.DataType]:
        """Check values against existing columns; return the types of columns to create."""
        existing = {f.name: f.type for f in self._lt.schema}
        new: dict[str, pa.DataType] = {}
        for meta in metas:
            for key, value in meta.items():
                if value is None:
                    continue
                want = _arrow_type(value)
                have = existing.get(key, new.get(key))
                if have is None:
                    new[key] = want
                elif have == want:
                    continue
                elif pa.types.is_floating(have) and pa.types.is_integer(want):
                    continue
                elif key in new and pa.types.is_integer(have) and pa.types.is_floating(want):
                    new[key] = pa.float64()
                else:
                    raise MetadataError(
                        f"metadata {key!r} holds {_kind(have)} values in this table; got {value!r}"
                    )
        return new

    def _add_columns(self, types: dict[str, pa.DataType]) -> None:
        sql_types = {pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN", pa.string(): "STRING"}
        for key, typ in types.items():
            if key in {f.name for f in self._lt.schema}:
                continue
            try:
                _retry(lambda: self._lt.add_columns({key: f"CAST(NULL AS {sql_types[typ]})"}), "add column")
            except ConflictError:
                raise
            except Exception:
                if key not in {f.name for f in self._lt.schema}:  # another writer may have added it
                    raise

    @contextmanager
    def _file_lock(self):
        with open(self._side / "lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _allocate_ids(self, n: int) -> list[int]:
        """Reserve n fresh ids (never reused, safe across processes)."""
        counter = self._side / "next_id.json"
        with self._file_lock():
            try:
                start = int(json.loads(counter.read_text())["next_id"])
            except (OSError, ValueError, KeyError):
                ids = self._scan(["id"])["id"]
                start = (pa.compute.max(ids).as_py() or 0) + 1 if len(ids) else 1
            tmp = counter.with_suffix(".tmp")
            tmp.write_text(json.dumps({"next_id": start + n}))
            os.replace(tmp, counter)
        return list(range(start, start + n))

    def delete(self, ids=None, *, where: str | None = None) -> int:
        """Delete items by id (an int or a list) or by filter; returns how many were deleted."""
        if (ids is None) == (where is None):
            raise InvalidInputError("delete takes ids or where=, exactly one of them")
        if where is not None:
            sql = self._sql(where)
        else:
            single = not isinstance(ids, (list, tuple, set, np.ndarray))
            id_list = [check_id(i) for i in ([ids] if single else ids)]
            if not id_list:
                return 0
            sql = f"id IN ({', '.join(map(str, id_list))})"
        with self._lock:
            doomed = self._scan(["id"], sql)["id"].to_numpy()
            if where is None and single and len(doomed) == 0:
                raise NotFoundError(f"no item {id_list[0]} in table {self.name!r}")
            if len(doomed) == 0:
                return 0
            index = self._sync_index()
            before = self._index_version  # as in add()
            _retry(lambda: self._lt.delete(sql), "delete")
            self._after_commit(index, before, lambda: index.remove(doomed))
        return int(len(doomed))

    def update(self, item_id: int, metadata: dict) -> dict:
        """Set metadata fields of one item (None clears a field); returns the item."""
        item_id = check_id(item_id)
        meta = data.check_metadata(metadata)
        if not meta:
            raise MetadataError("update needs at least one metadata field")
        with self._lock:
            if self.count_rows(f"id = {item_id}") == 0:
                raise NotFoundError(f"no item {item_id} in table {self.name!r}")
            self._add_columns(self._check_types([meta]))
            values = {k: v for k, v in meta.items()}
            _retry(lambda: self._lt.update(where=f"id = {item_id}", values=values), "update")
        return self.get(item_id)

    # ---- the index -----------------------------------------------------------------------

    def _save_index(self, index: VectorIndex, version: int, *, force: bool = True) -> None:
        """Keep ``index`` as covering ``version``; write it out (throttled for large indexes).

        The index is derived data: a stale file on disk only means a catch-up on next open."""
        self._index, self._index_version = index, version
        small = len(index) * self.embedder.dim * 4 < INDEX_SAVE_ALWAYS_BYTES
        if force or small or time.monotonic() - self._index_saved_at > INDEX_SAVE_INTERVAL_S:
            with self._file_lock():  # other processes write and read the same two files
                index.save(self._side / "index", IndexMeta(version, self.embedder.id, len(index), index.kind))
            self._index_saved_at = time.monotonic()
            self._index_dirty = False
        else:
            self._index_dirty = True

    def flush(self) -> None:
        """Write the index out now if writes since the last save were throttled."""
        with self._lock:
            if self._index is not None and self._index_dirty:
                self._save_index(self._index, self._index_version)

    def _sync_index(self) -> VectorIndex:
        """Bring the index in line with the table (load, catch up, or rebuild); return it."""
        with self._lock:
            version = self.version
            if self._index is not None and self._index_version == version:
                return self._index
            if self._index is None:
                with self._file_lock():
                    loaded = VectorIndex.load(self._side / "index", self.embedder.dim, self.index_config)
                if loaded and loaded[1].embedder == self.embedder.id:
                    self._index, self._index_version = loaded[0], loaded[1].table_version
                else:
                    saved = IndexMeta.read(self._side / "index")
                    old = saved.embedder if saved else None
                    if old and old != self.embedder.id:
                        # an index made by another embedding (e.g. the fixed pooling of older
                        # releases): vectors of two embeddings can't share an index, so rebuild
                        log.warning("table %r: index was built with embedding %s; re-indexing with %s",
                                    self.name, old, self.embedder.id)
                        self.reindexed_from = old
                    self._index, self._index_version = VectorIndex(self.embedder.dim, self.index_config), -1
                if self._index_version == version:
                    return self._index
            self._catch_up(self._index)
            self._save_index(self._index, version)
            return self._index

    def _catch_up(self, index: VectorIndex, progress=None) -> None:
        table_ids = self._scan(["id"])["id"].to_numpy()
        held = index.ids()
        extra = np.setdiff1d(held, table_ids, assume_unique=False)
        index.remove(extra)
        missing = np.setdiff1d(table_ids, held, assume_unique=False)
        for start in range(0, len(missing), SYNC_BATCH):
            chunk = missing[start : start + SYNC_BATCH]
            rows = self._rows(chunk.tolist(), ["id", "latent"])
            ids, latents = [], []
            for item_id, row in rows.items():
                try:
                    latents.append(self.codec.latents(row["latent"]))
                    ids.append(item_id)
                except (CorruptBitstreamError, CodecMismatchError):
                    continue  # a damaged row stays out of the index; `mostore check` reports it
            if ids:
                index.add(np.asarray(ids), self.embedder.batch(latents))
            if progress is not None:
                progress(len(chunk))

    def reindex(self, progress=None) -> dict:
        """Rebuild the index from the stored latents; ``progress(n)`` is called as rows are done."""
        with self._lock:
            (self._side / "index.json").unlink(missing_ok=True)
            self._index, self._index_version = VectorIndex(self.embedder.dim, self.index_config), -1
            self._catch_up(self._index, progress)
            self._save_index(self._index, self.version)
        return {"rows": self.count_rows(), "indexed": len(self._index), "kind": self._index.kind}

    def embedding(self, item_id: int) -> np.ndarray:
        """The embedding of a stored item, from its latents."""
        return self.embedder(self.latents(item_id))

    def search(self, query) -> "Query":
        """Start a query: an image (path/bytes/PIL/array), a stored id, or a vector."""
        from mostore.query import Query

        return Query(self, query)

    def _allowed(self, sql: str) -> np.ndarray:
        """Ids matching a filter, remembered per table version for the next few queries."""
        key = (sql, self.version)
        hit = self._allowed_cache.get(key)
        if hit is None:
            hit = self._scan(["id"], sql)["id"].to_numpy()
            self._allowed_cache[key] = hit
            while len(self._allowed_cache) > ALLOWED_CACHE_FILTERS:
                self._allowed_cache.pop(next(iter(self._allowed_cache)))
        return hit

    def _knn(self, vector: np.ndarray, k: int, where: str | None) -> list[tuple[int, float]]:
        with self._lock:
            index = self._sync_index()
            allowed = None
            if where is not None:
                allowed = self._allowed(self._sql(where))
                if len(allowed) == 0:
                    return []
            scores, ids = index.search(vector[None], k, allowed)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]

    # ---- maintenance -----------------------------------------------------------------------

    def check(self, progress=None) -> dict:
        """Verify every stored bitstream (structure, checksum, codec) and the index's agreement.

        Reads latents in batches (``progress(n)`` is called after each); returns counts and the
        ids of damaged rows."""
        damaged: list[dict] = []
        all_ids = self._scan(["id"])["id"].to_numpy()
        for start in range(0, len(all_ids), SYNC_BATCH):
            rows = self._rows(all_ids[start : start + SYNC_BATCH].tolist(), ["id", "latent"])
            for item_id, row in rows.items():
                try:
                    self._checked(row["latent"], item_id)
                except (CorruptBitstreamError, CodecMismatchError) as exc:
                    damaged.append({"id": item_id, "error": type(exc).__name__, "message": str(exc)})
            if progress is not None:
                progress(len(rows))
        index = self._sync_index()
        held = index.ids()
        bad = {d["id"] for d in damaged}
        expected = np.setdiff1d(all_ids, np.fromiter(bad, np.int64, len(bad)))
        return {
            "rows": int(len(all_ids)),
            "damaged": damaged,
            "index_count": len(index),
            "index_missing": int(len(np.setdiff1d(expected, held))),
            "index_extra": int(len(np.setdiff1d(held, all_ids))),
            "ok": not damaged and len(np.setdiff1d(expected, held)) == 0 and len(np.setdiff1d(held, all_ids)) == 0,
        }

    def optimize(self, *, keep_versions_for: timedelta = timedelta(days=7)) -> dict:
        """Compact small Lance fragments and drop versions older than ``keep_versions_for``.

        Readers of the latest version are unaffected; readers pinned to a pruned version are not,
        so keep a margin when other processes read old versions."""
        with self._lock:
            before = self._lt.stats()
            if self.count_rows() >= ID_INDEX_MIN_ROWS:
                # B-trees on id (the row lookups behind search hits) and on each metadata column (filters)
                # turn scans into seeks; lance's optimize below keeps them up to date with later appends
                for column in ["id"] + self.metadata_columns():
                    if not self._has_scalar_index(column):
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")  # lancedb marks create_scalar_index deprecated
                            _retry(lambda c=column: self._lt.create_scalar_index(c, index_type="BTREE"),
                                   f"index {column}")
            _retry(lambda: self._lt.optimize(cleanup_older_than=keep_versions_for), "optimize")
            after = self._lt.stats()
            self._sync_index()
        return {"fragments_before": _fragments(before), "fragments_after": _fragments(after), "version": self.version}

    def _has_scalar_index(self, column: str) -> bool:
        return any(column in getattr(ix, "columns", []) for ix in self._lt.list_indices())

    # ---- classification from latents -----------------------------------------------------

    def fit_classifier(self, name: str, label: str = "label", *, epochs: int = DEFAULT_CLASSIFIER_EPOCHS,
                       val_fraction: float = 0.2, seed: int = 0) -> dict:
        """Train a classifier on the stored latents of the rows where ``label`` is set.

        Entropy decoding only (never the pixel decoder); a seeded ``val_fraction`` of the rows is
        held out and the accuracy on it is reported. Saved with the table under ``name``.
        """
        check_table_name(name)
        if label not in self.metadata_columns():
            raise InvalidInputError(f"no metadata column {label!r}; columns: {self.metadata_columns()}")
        if not 0.0 <= val_fraction < 1.0:
            raise InvalidInputError("val_fraction must be in [0, 1)")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs <= 1000:
            raise InvalidInputError("epochs must be an int in 1..1000")
        ids = self._scan(["id", label], f"{label} IS NOT NULL")
        values = [str(v) for v in ids[label].to_pylist()]
        classes = sorted(set(values))
        counts = {c: values.count(c) for c in classes}
        if len(classes) < 2 or min(counts.values()) < 2:
            raise InvalidInputError(
                f"a classifier needs at least 2 classes with 2 labelled items each; {label!r} has {counts}"
            )
        lat, tgt = [], []
        index = {c: i for i, c in enumerate(classes)}
        for start in range(0, len(values), SYNC_BATCH):
            chunk = ids["id"].to_pylist()[start : start + SYNC_BATCH]
            rows = self._rows(chunk, ["id", "latent"])
            for item_id, value in zip(chunk, values[start : start + SYNC_BATCH]):
                try:
                    y = self.codec.latents(rows[item_id]["latent"])
                except (KeyError, CorruptBitstreamError, CodecMismatchError):
                    continue
                lat.append(LatentClassifier.prepare(y)[0].half())
                tgt.append(index[value])
        x, t = torch.stack(lat).float(), torch.tensor(tgt)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        n_val = int(len(x) * val_fraction) if len(x) >= 10 else 0
        val, train = order[:n_val], order[n_val:]
        # start from the learned embedding's trunk where there is one: features that already
        # separate images, so a few labels go further
        trunk = getattr(getattr(self.embedder, "model", None), "trunk", None)
        model, accuracy = fit_latent_classifier(
            x[train], t[train], len(classes), epochs=epochs, seed=seed, val_latents=x[val], val_targets=t[val],
            trunk=trunk,
        )
        info = {"name": name, "label": label, "classes": classes, "val_accuracy": accuracy, "arch": model.arch,
                "pretrained_trunk": trunk is not None,
                "n_train": int(len(train)), "n_val": int(len(val)), "epochs": epochs, "codec_id": self.codec.id}
        folder = self._side / "classifiers"
        folder.mkdir(exist_ok=True)
        tmp = folder / f"{name}.pt.tmp"
        torch.save({"info": info, "state": model.state_dict()}, tmp)
        os.replace(tmp, folder / f"{name}.pt")
        self._classifiers.pop(name, None)
        return info

    def classifiers(self) -> list[dict]:
        folder = self._side / "classifiers"
        return [self._classifier(p.stem)[1] for p in sorted(folder.glob("*.pt"))] if folder.is_dir() else []

    def _classifier(self, name: str) -> tuple[LatentClassifier, dict]:
        if not isinstance(name, str) or not TABLE_NAME.match(name):
            raise InvalidInputError(f"classifier name {name!r} is not allowed")
        if name not in self._classifiers:
            path = self._side / "classifiers" / f"{name}.pt"
            if not path.is_file():
                known = [p.stem for p in (self._side / "classifiers").glob("*.pt")]
                raise NotFoundError(f"no classifier {name!r} in table {self.name!r}; classifiers: {known}")
            blob = torch.load(path, map_location="cpu", weights_only=False)
            info = blob["info"]
            if info["codec_id"] != self.codec.id:
                raise CodecMismatchError(f"classifier {name!r} was trained on latents of codec {info['codec_id']}")
            if info.get("arch") != LatentClassifier.arch:
                raise CodecMismatchError(
                    f"classifier {name!r} was made by an older mostore ({info.get('arch', 'cnn-v0')}); "
                    f"fit it again: tbl.fit_classifier({name!r}, label={info.get('label')!r})"
                )
            model = LatentClassifier(self.codec.config.latent, len(info["classes"]))
            model.load_state_dict(blob["state"])
            self._classifiers[name] = (model.eval(), info)
        return self._classifiers[name]

    def classify(self, item, classifier: str) -> dict:
        """Label and per-class probabilities of a stored id or an image, from latents only."""
        model, info = self._classifier(classifier)
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            y = self.latents(int(item))
        else:
            y = self.codec.encode_with_latents(data.load_image(item, self.db.max_pixels), self.quality)[1]
        with torch.no_grad():
            probs = torch.softmax(model(LatentClassifier.prepare(y)), dim=1)[0]
        best = int(probs.argmax())
        return {"label": info["classes"][best], "score": float(probs[best]), "classifier": classifier,
                "scores": {c: float(p) for c, p in zip(info["classes"], probs)}}

    def classify_all(self, classifier: str, column: str | None = None) -> dict:
        """Predict every row and write the labels to ``column`` (default ``<classifier>_pred``)."""
        model, info = self._classifier(classifier)
        column = column or f"{classifier}_pred"
        data.check_metadata({column: "x"})
        if column == info["label"]:
            raise InvalidInputError("classify_all would overwrite the label column it was trained on")
        by_class: dict[str, list[int]] = {}
        all_ids = self._scan(["id"])["id"].to_pylist()
        for start in range(0, len(all_ids), SYNC_BATCH):
            rows = self._rows(all_ids[start : start + SYNC_BATCH], ["id", "latent"])
            for item_id, row in rows.items():
                try:
                    y = self.codec.latents(row["latent"])
                except (CorruptBitstreamError, CodecMismatchError):
                    continue
                with torch.no_grad():
                    pred = info["classes"][int(model(LatentClassifier.prepare(y)).argmax())]
                by_class.setdefault(pred, []).append(item_id)
        with self._lock:
            self._add_columns(self._check_types([{column: "x"}]))
            for label, ids in by_class.items():
                for start in range(0, len(ids), 1000):
                    where = f"id IN ({', '.join(map(str, ids[start:start + 1000]))})"
                    _retry(lambda: self._lt.update(where=where, values={column: label}), "classify_all")
        return {"column": column, "counts": {k: len(v) for k, v in sorted(by_class.items())}}

    def describe_hits(self, hits: list[tuple[int, float]], columns: list[str] | None = None) -> list[dict]:
        if columns == []:  # ids and scores only: no row is read
            return [{"id": item_id, "score": score, "metadata": {}} for item_id, score in hits]
        cols = ["id"] + (self.metadata_columns() if columns is None else columns)
        rows = self._rows([h[0] for h in hits], cols)
        out = []
        for item_id, score in hits:
            row = rows.get(item_id)
            if row is None:
                continue  # deleted between the search and now
            meta = {k: row[k] for k in cols[1:] if row.get(k) is not None}
            out.append({"id": item_id, "score": score, "metadata": meta})
        return out


def _flush_at_exit(ref: "weakref.ref[Table]") -> None:
    table = ref()
    if table is not None:
        try:
            table.flush()
        except Exception:  # the folder may be gone; the index is rebuilt from the table anyway
            pass


def _arrow_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64()
    if isinstance(value, float):
        return pa.float64()
    return pa.string()


def _kind(typ: pa.DataType) -> str:
    if pa.types.is_boolean(typ):
        return filters.BOOL
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        return filters.NUMERIC
    return filters.STRING
