"""The FAISS index of a table: derived data, saved beside the table, rebuilt when lost.

A :class:`VectorIndex` maps item ids to unit-norm embeddings (inner product = cosine).
Below ``IndexConfig.flat_threshold`` vectors it is exact (``IndexFlatIP`` in an
``IndexIDMap2``); above it, with ``kind="auto"``, it is rebuilt as IVF-PQ (which keeps the
table's ids itself, with a hashtable direct map), trained on the vectors it already holds.
Either way ids are the table's ids and deletes are real removals.

Saved as two files: ``NAME.faiss`` (``faiss.write_index``) and ``NAME.json`` — the table
version the index covers, the embedder id and the count — written atomically (tmp + rename),
the JSON last. The table decides what is true; see ``Table._sync_index``.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from mostore.errors import InvalidInputError

KINDS = ("auto", "flat", "ivfsq", "ivfpq")
#: filters allowing at most this many ids are searched by scoring those vectors directly
EXACT_FILTER_MAX = 50_000


@dataclass
class IndexConfig:
    """How a table's index is built. ``kind``: auto (flat, then IVF-SQ8 past the threshold),
    flat (always exact), ivfsq (inverted lists of 8-bit scalar-quantised vectors: a quarter of
    float32's memory, recall close to exact) or ivfpq (product-quantised to ``pq_bytes`` per
    vector: smallest, lowest recall)."""

    kind: str = "auto"
    flat_threshold: int = 50_000
    nprobe: int = 32
    pq_bytes: int = 48  # sub-quantizers of the PQ code (must divide the dimension)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InvalidInputError(f"index kind must be one of {KINDS}, not {self.kind!r}")


@dataclass
class IndexMeta:
    table_version: int
    embedder: str
    count: int
    kind: str

    @classmethod
    def read(cls, path: Path) -> "IndexMeta | None":
        """The meta saved beside the index at ``path`` (``.json``), or None if missing or damaged."""
        try:
            raw = json.loads(Path(path).with_suffix(".json").read_text())
            return cls(**{k: raw[k] for k in ("table_version", "embedder", "count", "kind")})
        except (OSError, ValueError, KeyError, TypeError):
            return None


class VectorIndex:
    def __init__(self, dim: int, config: IndexConfig | None = None, index: faiss.Index | None = None):
        self.dim = dim
        self.config = config or IndexConfig()
        self.index = index if index is not None else self._new_flat()

    def _new_flat(self) -> faiss.Index:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    @property
    def kind(self) -> str:
        if isinstance(self.index, faiss.IndexIVFScalarQuantizer):
            return "ivfsq"
        return "ivfpq" if isinstance(self.index, faiss.IndexIVF) else "flat"

    @property
    def is_ivf(self) -> bool:
        return isinstance(self.index, faiss.IndexIVF)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        if isinstance(self.index, faiss.IndexIVF):
            lists = self.index.invlists
            parts = [
                faiss.rev_swig_ptr(lists.get_ids(i), lists.list_size(i)).copy()
                for i in range(lists.nlist)
                if lists.list_size(i)
            ]
            return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(ids), self.dim)
        self.index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))
        self._maybe_grow()

    def remove(self, ids) -> int:
        ids = np.asarray(list(ids), dtype=np.int64)
        if len(ids) == 0:
            return 0
        # a hashtable direct map (IVF) can only remove by an explicit array
        sel = faiss.IDSelectorArray(ids) if self.is_ivf else faiss.IDSelectorBatch(ids)
        return int(self.index.remove_ids(sel))

    def vectors(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors of ids (approximate for the quantised kinds)."""
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))

    def _maybe_grow(self) -> None:
        want_ivf = self.config.kind in ("ivfsq", "ivfpq") or (
            self.config.kind == "auto" and len(self) > self.config.flat_threshold
        )
        if want_ivf and self.kind == "flat" and len(self) >= 1000:
            self.rebuild_ivf()

    def rebuild_ivf(self) -> None:
        """Train an IVF index (SQ8, or PQ when configured) on the vectors held now and move them in."""
        ids = self.ids()
        if not self.is_ivf:
            vecs = faiss.downcast_index(self.index.index).reconstruct_n(0, len(ids))
        else:
            vecs = self.vectors(ids)
        # ~4·sqrt(n) lists, with at least 39 training points per centroid (FAISS's advice)
        nlist = int(max(1, min(65536, 4 * np.sqrt(len(ids)), len(ids) // 39)))
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.config.kind == "ivfpq":
            m = self.config.pq_bytes if self.dim % self.config.pq_bytes == 0 else 1
            nbits = int(min(8, max(4, np.log2(max(16, len(ids) // 39)))))
            ivf = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
        else:
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
        sample = vecs[np.random.default_rng(0).permutation(len(vecs))[: max(nlist * 40, 10_000)]]
        ivf.train(sample)
        ivf.nprobe = self.config.nprobe
        # IVF keeps our ids itself; a hashtable direct map makes reconstruct and remove work
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        ivf.add_with_ids(vecs, ids)
        self.index = ivf

    def search(self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query row; ``allowed``: restrict to these ids (prefilter)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self))) if len(self) else 1
        if len(self) == 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        params = None
        is_ivf = self.is_ivf
        direct = None
        if allowed is not None and len(allowed) <= EXACT_FILTER_MAX and self._score_directly(len(allowed), k):
            # a selective filter: score the allowed vectors directly (exact over the stored codes,
            # and cheaper than probing lists that mostly hold rows the filter excludes)
            allowed = np.asarray(allowed, dtype=np.int64)
            try:
                direct = self.vectors(allowed)
            except RuntimeError:  # an allowed row the index lacks (a damaged bitstream): use the selector
                direct = None
        if direct is not None:
            scores = queries @ direct.T
            top = np.argsort(-scores, axis=1)[:, :k]
            out_ids = np.full((len(queries), k), -1, np.int64)
            out_scores = np.full((len(queries), k), -np.inf, np.float32)
            out_ids[:, : top.shape[1]] = allowed[top]
            out_scores[:, : top.shape[1]] = np.take_along_axis(scores, top, axis=1)
            return out_scores, out_ids
        if allowed is not None:
            sel = faiss.IDSelectorBatch(np.asarray(allowed, dtype=np.int64))
            if is_ivf:
                params = faiss.SearchParametersIVF(sel=sel, nprobe=self.config.nprobe)
            else:
                params = faiss.SearchParameters(sel=sel)
        elif is_ivf:
            params = faiss.SearchParametersIVF(nprobe=self.config.nprobe)
        scores, ids = self.index.search(queries, k, params=params)
        if allowed is not None and is_ivf and len(allowed) <= 100_000:
            # an IVF probe may miss filtered rows: score the allowed set exactly when short
            short = np.flatnonzero((ids < 0).any(axis=1) & (len(allowed) > (ids >= 0).sum(axis=1)))
            if len(short):
                try:
                    vecs = self.vectors(allowed)  # read once for every short row
                except RuntimeError:  # as above: the probe's answer stands
                    short = short[:0]
            for row in short:
                s = vecs @ queries[row]
                top = np.argsort(-s)[:k]
                scores[row, : len(top)], ids[row, : len(top)] = s[top], np.asarray(allowed)[top]
        return scores, ids

    def _score_directly(self, n_allowed: int, k: int) -> bool:
        """Flat: always (a selector still scans every vector). IVF: when the probed lists would
        hold too few allowed vectors to fill k (then the probe would come back short anyway)."""
        if not self.is_ivf:
            return True
        expected = n_allowed * min(self.config.nprobe, self.index.nlist) / self.index.nlist
        return expected < 2 * k  # (a probe that still comes back short falls back to direct scoring)

    # persistence
    def save(self, path: Path, meta: IndexMeta) -> None:
        """Write index then meta, each by rename of a file private to this writer.

        Callers that share the folder with other processes hold the table's file lock, so a
        reader never pairs one writer's index with another's meta."""
        path = Path(path)
        private = f"{os.getpid()}-{threading.get_ident()}.tmp"
        tmp = path.with_suffix(f".faiss.{private}")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path.with_suffix(".faiss"))
        tmp_meta = path.with_suffix(f".json.{private}")
        tmp_meta.write_text(json.dumps({**asdict(meta), "config": asdict(self.config)}))
        os.replace(tmp_meta, path.with_suffix(".json"))

    @classmethod
    def load(cls, path: Path, dim: int, config: IndexConfig) -> tuple["VectorIndex", IndexMeta] | None:
        """The saved index and its meta, or None when missing, unreadable or inconsistent."""
        path = Path(path)
        meta = IndexMeta.read(path)
        if meta is None:
            return None
        try:
            # read_index returns the concrete class already; a downcast proxy would not own the
            # C++ object, which is freed with the first proxy (seen: a garbage ``d`` and a rebuild)
            index = faiss.read_index(str(path.with_suffix(".faiss")))
        except Exception:  # missing or damaged: the caller rebuilds from the table
            return None
        if index.d != dim or int(index.ntotal) != meta.count or not isinstance(index, (faiss.IndexIDMap2, faiss.IndexIVF)):
            return None
        return cls(dim, config, index), meta
