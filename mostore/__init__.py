"""mostore: a compressed-domain vector database for media.

Every image is coded once by a learned codec; the latent bytes are the only stored copy.
Search, classification and reconstruction all start from them.

>>> import mostore
>>> db = mostore.connect("./photos.mostore")                 # doctest: +SKIP
>>> db = mostore.connect("http://127.0.0.1:8000")            # doctest: +SKIP

The first is an embedded database (a folder on disk), the second the same API over HTTP.
"""

from __future__ import annotations

from pathlib import Path

from mostore.codec.model import Codec
from mostore.errors import *  # noqa: F401,F403  (the exception tree is public)
from mostore.errors import ERRORS
from mostore.index import IndexConfig
from mostore.store import Database, Table

__version__ = "0.1.0"
__all__ = ["connect", "Codec", "Database", "Table", "IndexConfig", *ERRORS]


def connect(
    uri: str | Path, *, api_key: str | None = None, codec: Codec | None = None, index: IndexConfig | None = None,
    max_pixels: int | None = None,
):
    """Open a database: a folder path (embedded) or an ``http(s)://`` URL (a mostore server).

    ``codec``: weights for new tables (default: the shipped ones); ``index``: index settings;
    ``max_pixels``: the largest image accepted (default 100 Mpx)."""
    if isinstance(uri, str) and uri.startswith(("http://", "https://")):
        from mostore.remote import RemoteDatabase

        return RemoteDatabase(uri, api_key=api_key)
    return Database(uri, codec=codec, index=index, **({"max_pixels": max_pixels} if max_pixels else {}))
