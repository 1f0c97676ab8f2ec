"""The HTTP client: the same Database / Table / Query API, over a mostore server.

Errors come back as the same exception classes the embedded store raises (the server sends
the class name; see :mod:`mostore.errors`).

>>> db = mostore.connect("http://127.0.0.1:8000", api_key="...")     # doctest: +SKIP
>>> db.open_table("photos").search("cat.jpg").limit(5).to_list()    # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from mostore.errors import ERRORS, InvalidInputError, RemoteError
from mostore.query import DEFAULT_K, check_k

TIMEOUT = 300.0


def _image_bytes(item: Any) -> bytes:
    """Turn any accepted image form into encoded bytes for upload (PNG for pixels)."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            from mostore.errors import InvalidImageError

            raise InvalidImageError(f"no such image file: {str(path)!r}")
        return path.read_bytes()
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, np.ndarray):
        from mostore.data import load_image

        item = load_image(item)
    if isinstance(item, Image.Image):
        buf = io.BytesIO()
        item.save(buf, "PNG")
        return buf.getvalue()
    from mostore.errors import InvalidImageError

    raise InvalidImageError(f"can't read an image from {type(item).__name__}")


class _Client:
    def __init__(self, url: str, api_key: str | None):
        headers = {"X-API-Key": api_key} if api_key else {}
        self.http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=TIMEOUT)

    def request(self, method: str, path: str, **kw) -> httpx.Response:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RemoteError(f"{method} {path}: {exc}") from exc
        if r.status_code >= 400:
            try:
                body = r.json()
                cls = ERRORS.get(body.get("error"), RemoteError)
                message = body.get("message", r.text)
            except (ValueError, AttributeError):
                cls, message = RemoteError, f"HTTP {r.status_code}: {r.text[:200]}"
            raise cls(message)
        return r

    def json(self, method: str, path: str, **kw) -> Any:
        return self.request(method, path, **kw).json()


class RemoteDatabase:
    def __init__(self, url: str, api_key: str | None = None):
        self.url = url
        self._c = _Client(url, api_key)

    def __repr__(self) -> str:
        return f"mostore.RemoteDatabase({self.url!r})"

    def table_names(self) -> list[str]:
        return self._c.json("GET", "/tables")["tables"]

    def create_table(self, name: str, *, codec: str | None = None, quality: int | None = None, exist_ok: bool = False):
        body = {"name": name, **({"codec": codec} if codec else {}), **({"quality": quality} if quality else {})}
        try:
            self._c.json("POST", "/tables", json=body)
        except ERRORS["AlreadyExistsError"]:
            if not exist_ok:
                raise
        return RemoteTable(self._c, name)

    def open_table(self, name: str) -> "RemoteTable":
        if name not in self.table_names():
            from mostore.store import check_table_name

            check_table_name(name)
            raise ERRORS["NotFoundError"](f"no table {name!r} on {self.url}")
        return RemoteTable(self._c, name)

    def drop_table(self, name: str) -> None:
        self._c.json("DELETE", f"/tables/{name}")

    def health(self) -> dict:
        return self._c.json("GET", "/health")


class RemoteTable:
    def __init__(self, client: _Client, name: str):
        self._c = client
        self.name = name

    def __repr__(self) -> str:
        return f"mostore.RemoteTable({self.name!r})"

    def add(self, items, metadata=None, *, quality: int | None = None) -> list[int]:
        if isinstance(items, (str, Path, bytes, bytearray, np.ndarray, Image.Image)):
            items = [items]
            if isinstance(metadata, dict):
                metadata = [metadata]
        if not isinstance(items, (list, tuple)):
            raise InvalidInputError(f"items must be a list of images, not {type(items).__name__}")
        if not items:
            return []
        files = [("files", (f"item{i}", _image_bytes(it), "application/octet-stream")) for i, it in enumerate(items)]
        form = {}
        if metadata is not None:
            form["metadata"] = json.dumps(metadata)
        if quality is not None:
            form["quality"] = str(quality)
        return self._c.json("POST", f"/tables/{self.name}/items", files=files, data=form)["ids"]

    def items(self, where: str | None = None, *, offset: int = 0, limit: int = 50) -> list[dict]:
        params = {"offset": offset, "limit": limit, **({"where": where} if where else {})}
        return self._c.json("GET", f"/tables/{self.name}/items", params=params)["items"]

    def get(self, item_id: int) -> dict:
        return self._c.json("GET", f"/tables/{self.name}/items/{_id(item_id)}")

    def count_rows(self, where: str | None = None) -> int:
        params = {"where": where} if where else {}
        return self._c.json("GET", f"/tables/{self.name}/count", params=params)["count"]

    def delete(self, ids=None, *, where: str | None = None) -> int:
        if where is None and ids is not None and not isinstance(ids, (list, tuple, set, np.ndarray)):
            return self._c.json("DELETE", f"/tables/{self.name}/items/{_id(ids)}")["deleted"]
        body = {"where": where} if ids is None else {"ids": [int(i) for i in ids], "where": where}
        return self._c.json("POST", f"/tables/{self.name}/delete", json=body)["deleted"]

    def update(self, item_id: int, metadata: dict) -> dict:
        return self._c.json("PATCH", f"/tables/{self.name}/items/{_id(item_id)}", json={"metadata": metadata})

    def reconstruct(self, item_id: int) -> Image.Image:
        r = self._c.request("GET", f"/tables/{self.name}/items/{_id(item_id)}/image")
        image = Image.open(io.BytesIO(r.content))
        image.load()
        return image

    def latent_bytes(self, item_id: int) -> bytes:
        return self._c.request("GET", f"/tables/{self.name}/items/{_id(item_id)}/latent").content

    def stats(self) -> dict:
        return self._c.json("GET", f"/tables/{self.name}/stats")

    def check(self) -> dict:
        return self._c.json("GET", f"/tables/{self.name}/check")

    def optimize(self, *, keep_versions_for=None) -> dict:
        params = {"keep_hours": keep_versions_for.total_seconds() / 3600} if keep_versions_for is not None else {}
        return self._c.json("POST", f"/tables/{self.name}/optimize", params=params)

    def reindex(self) -> dict:
        return self._c.json("POST", f"/tables/{self.name}/reindex")

    def search(self, query) -> "RemoteQuery":
        return RemoteQuery(self, query)

    def fit_classifier(self, name: str, label: str = "label", **kwargs) -> dict:
        return self._c.json("POST", f"/tables/{self.name}/classifiers", json={"name": name, "label": label, **kwargs})

    def classifiers(self) -> list[dict]:
        return self._c.json("GET", f"/tables/{self.name}/classifiers")["classifiers"]

    def classify(self, item, classifier: str) -> dict:
        path = f"/tables/{self.name}/classify"
        if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            return self._c.json("POST", path, json={"id": int(item), "classifier": classifier})
        files = {"image": ("image", _image_bytes(item), "application/octet-stream")}
        return self._c.json("POST", path, files=files, data={"classifier": classifier})

    def classify_all(self, classifier: str, column: str | None = None) -> dict:
        return self._c.json("POST", f"/tables/{self.name}/classify_all", json={"classifier": classifier, "column": column})


def _id(item_id: Any) -> int:
    from mostore.store import check_id

    return check_id(item_id)


class RemoteQuery:
    def __init__(self, table: RemoteTable, query: Any):
        self._t = table
        self._query = query
        self._where: str | None = None
        self._k = DEFAULT_K
        self._columns: list[str] | None = None

    def where(self, filter: str) -> "RemoteQuery":
        if not isinstance(filter, str):
            from mostore.errors import FilterError

            raise FilterError(f"a filter is a string, not {type(filter).__name__}")
        self._where = filter
        return self

    def limit(self, k: int) -> "RemoteQuery":
        self._k = check_k(k)
        return self

    def select(self, columns: list[str]) -> "RemoteQuery":
        if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
            raise InvalidInputError("select takes a list of metadata column names")
        self._columns = list(columns)
        return self

    def to_list(self) -> list[dict]:
        q = self._query
        path = f"/tables/{self._t.name}/search"
        extra = {**({"where": self._where} if self._where else {}),
                 **({"select": self._columns} if self._columns is not None else {})}
        if isinstance(q, (int, np.integer)) and not isinstance(q, bool):
            body = {"id": int(q), "k": self._k, **extra}
            return self._t._c.json("POST", path, json=body)["hits"]
        if isinstance(q, (list, tuple)) or (isinstance(q, np.ndarray) and q.dtype != np.uint8):
            vec = np.asarray(q, dtype=np.float64)
            if not np.all(np.isfinite(vec)):
                raise InvalidInputError("query vector holds NaN or infinite values")
            body = {"vector": vec.tolist(), "k": self._k, **extra}
            return self._t._c.json("POST", path, json=body)["hits"]
        form = {"k": str(self._k), **({"where": self._where} if self._where else {}),
                **({"select": json.dumps(self._columns)} if self._columns is not None else {})}
        files = {"image": ("query", _image_bytes(q), "application/octet-stream")}
        return self._t._c.json("POST", path, files=files, data=form)["hits"]

    def to_pandas(self):
        import pandas as pd

        rows = [{"id": h["id"], "score": h["score"], **h["metadata"]} for h in self.to_list()]
        return pd.DataFrame(rows, columns=None if rows else ["id", "score"])
