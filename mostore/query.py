"""The query builder returned by ``Table.search()``.

Setters check their argument and return the builder; only ``to_list`` / ``to_pandas`` run::

    tbl.search("cat.jpg").where("label = 'cat'").limit(10).to_list()

A query is an image (encoded with the table's codec, then embedded from its latents: search
happens in the latent domain), a stored item id (its stored latents are embedded, nothing is
re-encoded) or a vector of the index's dimension. ``where`` is a prefilter: the k nearest among the matching rows come back,
so ``limit(k)`` gives exactly k hits whenever k rows match.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mostore import data
from mostore.errors import InvalidInputError

DEFAULT_K = 10
MAX_K = 10_000


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InvalidInputError(f"k must be an int, not {type(k).__name__}")
    if not 1 <= k <= MAX_K:
        raise InvalidInputError(f"k must be in 1..{MAX_K}, not {k}")
    return int(k)


def check_vector(vector: Any, dim: int) -> np.ndarray:
    try:
        v = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"a query vector is a list of {dim} numbers") from exc
    if v.ndim != 1 or v.shape[0] != dim:
        raise InvalidInputError(f"query vector has shape {v.shape}; this table's embeddings have {dim} dimensions")
    if not np.all(np.isfinite(v)):
        raise InvalidInputError("query vector holds NaN or infinite values")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise InvalidInputError("query vector is all zeros")
    return v / norm


def check_columns(columns: Any, known: list[str]) -> list[str]:
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
        raise InvalidInputError("select takes a list of metadata column names")
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise InvalidInputError(f"no metadata columns {unknown}; columns: {known}")
    return list(columns)


class Query:
    def __init__(self, table, query: Any):
        self._table = table
        self._query = query
        self._where: str | None = None
        self._k = DEFAULT_K
        self._vector: np.ndarray | None = None
        self._columns: list[str] | None = None  # None: every metadata column
        self._check_query()

    def _check_query(self) -> None:
        q = self._query
        if isinstance(q, (int, np.integer)) and not isinstance(q, bool):
            from mostore.store import check_id

            check_id(q)
        elif isinstance(q, (str, Path, bytes, bytearray, Image.Image)):
            pass
        elif isinstance(q, np.ndarray) and q.dtype == np.uint8:
            pass
        elif isinstance(q, (list, tuple, np.ndarray)):
            self._vector = check_vector(q, self._table.embedder.dim)
        else:
            raise InvalidInputError(
                f"can't search by {type(q).__name__}: give an image, a stored id or a vector"
            )

    def where(self, filter: str) -> "Query":
        """Only return items matching ``filter`` (see :mod:`mostore.filters`)."""
        self._table._sql(filter)  # check now, so errors point at the right call
        self._where = filter
        return self

    def limit(self, k: int) -> "Query":
        self._k = check_k(k)
        return self

    def select(self, columns: list[str]) -> "Query":
        """Return only these metadata columns with each hit; ``[]`` returns ids and scores alone,
        without reading any row (the fastest form)."""
        known = self._table.metadata_columns() if columns else []
        self._columns = check_columns(columns, known)
        return self

    def vector(self) -> np.ndarray:
        """The query's embedding."""
        if self._vector is None:
            q = self._query
            if isinstance(q, (int, np.integer)):
                self._vector = self._table.embedding(int(q))
            else:
                image = data.load_image(q, self._table.db.max_pixels)
                self._vector = self._table.embedder.query(self._table.codec, image, self._table.quality)
        return self._vector

    def to_list(self) -> list[dict]:
        """Hits, best first: ``{"id", "score", "metadata"}``."""
        hits = self._table._knn(self.vector(), self._k, self._where)
        return self._table.describe_hits(hits, self._columns)

    def to_pandas(self):
        import pandas as pd

        rows = [{"id": h["id"], "score": h["score"], **h["metadata"]} for h in self.to_list()]
        return pd.DataFrame(rows, columns=None if rows else ["id", "score"])
