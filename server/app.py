"""The HTTP API: thin FastAPI routes over :class:`mostore.Table`, nothing more.

Every error is JSON ``{"error": ExceptionName, "message": ...}`` with the exception's status;
a bad request never changes stored data. Table work (encoding, decoding, FAISS) runs in the
thread pool, off the event loop. Settings come from the environment, read once here
(:class:`Settings`); nothing else in mostore reads environment variables.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import mostore
from mostore import query as q
from mostore.data import MAX_PIXELS
from mostore.errors import (
    AuthError,
    ForbiddenError,
    ImageTooLargeError,
    InvalidInputError,
    MetadataError,
    MostoreError,
)

DEFAULT_MAX_UPLOAD = 32 * 1024 * 1024
MAX_FILES_PER_REQUEST = 256
THUMB_CACHE_ITEMS = 4096
KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


@dataclass
class Settings:
    db: Path = Path("./mostore.db")
    #: key -> "rw" | "ro"; empty means no auth
    api_keys: dict[str, str] = field(default_factory=dict)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    cors_origins: list[str] = field(default_factory=list)
    #: codec weights (shipped name or checkpoint path) for tables created over HTTP
    codec: str | None = None
    max_pixels: int = MAX_PIXELS
    #: IVF lists probed per search (None: mostore's default)
    nprobe: int | None = None

    @classmethod
    def from_env(cls, db: str | Path | None = None) -> "Settings":
        keys = {}
        for entry in filter(None, (e.strip() for e in os.environ.get("MOSTORE_API_KEYS", "").split(","))):
            key, _, role = entry.partition(":")
            keys[key] = "ro" if role == "ro" else "rw"
        origins = [o for o in os.environ.get("MOSTORE_CORS_ORIGINS", "").split(",") if o]
        return cls(
            db=Path(db or os.environ.get("MOSTORE_DB", "./mostore.db")),
            api_keys=keys,
            max_upload_bytes=int(os.environ.get("MOSTORE_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD)),
            cors_origins=origins,
            codec=os.environ.get("MOSTORE_CODEC") or None,
            max_pixels=int(os.environ.get("MOSTORE_MAX_PIXELS", MAX_PIXELS)),
            nprobe=int(os.environ["MOSTORE_NPROBE"]) if os.environ.get("MOSTORE_NPROBE") else None,
        )


#: latency histogram bounds, seconds
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

log = logging.getLogger("mostore.http")


class Histogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
        self.sum += seconds

    def render(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out, total = [], 0
        for bound, n in zip((*BUCKETS, "+Inf"), self.counts):
            total += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound}"}} {total}')
        braces = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{braces} {self.sum:.6f}", f"{name}_count{braces} {total}"]
        return out


class Metrics:
    """Prometheus metrics: requests and latency per route, ingest/search/decode timings, items, bytes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], Histogram] = {}
        self.stages: dict[str, Histogram] = {s: Histogram() for s in ("ingest", "search", "decode")}
        self.items_added = 0
        self.thumbs_rendered = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self.lock:
            key = (method, route, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault((method, route), Histogram()).observe(seconds)

    def stage(self, name: str, seconds: float) -> None:
        with self.lock:
            self.stages[name].observe(seconds)

    def render(self, db: mostore.Database) -> str:
        with self.lock:
            lines = ["# HELP mostore_http_requests_total HTTP requests by method, route and status.",
                     "# TYPE mostore_http_requests_total counter"]
            for (m, r, s), n in sorted(self.requests.items()):
                lines.append(f'mostore_http_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}')
            lines += ["# HELP mostore_http_request_duration_seconds Time to answer, by method and route.",
                      "# TYPE mostore_http_request_duration_seconds histogram"]
            for (m, r), h in sorted(self.latency.items()):
                lines += h.render("mostore_http_request_duration_seconds", f'method="{m}",route="{r}"')
            for stage, what in (("ingest", "one add call: decode input, encode, embed, Lance append, index"),
                                ("search", "one search: encode or look up the query, embed, FAISS, rows"),
                                ("decode", "one reconstruction from latents to pixels")):
                name = f"mostore_{stage}_duration_seconds"
                lines += [f"# HELP {name} {what}.", f"# TYPE {name} histogram"]
                lines += self.stages[stage].render(name, "")
            lines += ["# TYPE mostore_items_added_total counter", f"mostore_items_added_total {self.items_added}",
                      "# TYPE mostore_thumbnails_rendered_total counter",
                      f"mostore_thumbnails_rendered_total {self.thumbs_rendered}"]
        lines += ["# HELP mostore_table_rows Items stored per table.", "# TYPE mostore_table_rows gauge"]
        sizes = ["# HELP mostore_table_latent_bytes Bytes of stored latents per table.",
                 "# TYPE mostore_table_latent_bytes gauge"]
        for name in db.table_names():
            rows, nbytes = db.open_table(name).size()
            lines.append(f'mostore_table_rows{{table="{name}"}} {rows}')
            sizes.append(f'mostore_table_latent_bytes{{table="{name}"}} {nbytes}')
        return "\n".join(lines + sizes) + "\n"


def _error(exc: MostoreError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "message": str(exc)}, status_code=exc.status)


READ_ONLY_POSTS = ("/search", "/classify")  # POSTs that only read


class Guard:
    """Pure ASGI middleware (cheaper per request than ``@app.middleware``): API keys, the body-size
    limit, a request id on every response, metrics and one JSON log line per request."""

    def __init__(self, app, settings: Settings, metrics: Metrics):
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        request = Request(scope)
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:16]
        status = [500]

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode("latin-1", "replace"))]
            await send(message)

        try:
            _authorise(request, self.settings)
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.settings.max_upload_bytes):
                raise ImageTooLargeError(
                    f"request body is {length} bytes; the limit is {self.settings.max_upload_bytes}"
                    " (MOSTORE_MAX_UPLOAD_BYTES)"
                )
        except MostoreError as exc:
            await _error(exc)(scope, receive, send_with_id)
        else:
            await self.app(scope, receive, send_with_id)
        path = getattr(scope.get("route"), "path", "unmatched")
        seconds = time.perf_counter() - start
        method = request.method if request.method in KNOWN_METHODS else "OTHER"  # bounded label values
        self.metrics.observe(method, path, status[0], seconds)
        if log.isEnabledFor(logging.INFO):
            log.info(json.dumps({"request_id": request_id, "method": request.method, "route": path,
                                 "path": request.url.path, "status": status[0], "ms": round(seconds * 1e3, 2),
                                 "client": request.client.host if request.client else None}))


def create_app(settings: Settings | None = None, *, codec: mostore.Codec | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    if codec is None and settings.codec:
        codec = mostore.Codec.load(settings.codec)
    index = mostore.IndexConfig(nprobe=settings.nprobe) if settings.nprobe else None
    db = mostore.connect(settings.db, codec=codec, max_pixels=settings.max_pixels, index=index)
    metrics = Metrics()
    thumbs: OrderedDict[tuple[str, str], bytes] = OrderedDict()
    thumbs_lock = threading.Lock()
    app = FastAPI(title="mostore", version=mostore.__version__, description="A compressed-domain vector database for media.")
    app.state.db = db
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"], allow_headers=["*"])

    app.add_middleware(Guard, settings=settings, metrics=metrics)  # outermost: before CORS and routing

    @app.exception_handler(MostoreError)
    async def on_mostore_error(request: Request, exc: MostoreError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        detail = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors())
        return JSONResponse({"error": "InvalidInputError", "message": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException):
        name = {404: "NotFoundError", 405: "InvalidInputError"}.get(exc.status_code, "MostoreError")
        return JSONResponse({"error": name, "message": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception):
        return JSONResponse({"error": "MostoreError", "message": f"internal error: {type(exc).__name__}"}, status_code=500)

    async def body_json(request: Request) -> dict:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise InvalidInputError("request body must be a JSON object")
        return body

    async def form(request: Request):
        try:
            return await request.form(max_files=MAX_FILES_PER_REQUEST, max_part_size=1024 * 1024)
        except Exception as exc:
            raise InvalidInputError(f"bad multipart body: {exc}") from exc

    def table(name: str) -> mostore.Table:
        return db.open_table(name)

    @app.get("/health")
    def health():
        return {"status": "ok", "version": mostore.__version__}

    @app.get("/tables")
    def list_tables():
        return {"tables": db.table_names()}

    @app.post("/tables", status_code=201)
    async def create_table(request: Request):
        body = await body_json(request)
        name = body.get("name")
        quality = body.get("quality")
        codec_name = body.get("codec")
        if codec_name is not None and not isinstance(codec_name, str):
            raise InvalidInputError("codec must be a string")
        if codec_name is not None and ("/" in codec_name or "\\" in codec_name or codec_name.startswith(".")):
            raise InvalidInputError("codec must be the name of shipped weights, not a path")
        tbl = await run_in_threadpool(lambda: db.create_table(name, codec=codec_name, quality=quality))
        return {"name": tbl.name, "quality": tbl.quality, "codec_id": tbl.codec.id}

    @app.delete("/tables/{name}")
    def drop_table(name: str):
        db.drop_table(name)
        return {"dropped": name}

    @app.post("/tables/{name}/items")
    async def add_items(name: str, request: Request):
        tbl = table(name)
        data = await form(request)
        files = data.getlist("files")
        if not files:
            raise InvalidInputError("upload one or more files in parts named 'files'")
        blobs = []
        for f in files:
            if isinstance(f, str):
                raise InvalidInputError("'files' parts must be file uploads")
            blobs.append(await f.read())
        meta: Any = None
        raw = data.get("metadata")
        if raw is not None:
            try:
                meta = json.loads(raw)
            except (ValueError, TypeError) as exc:
                raise MetadataError(f"metadata is not valid JSON: {exc}") from exc
            if isinstance(meta, dict) and len(blobs) == 1:
                meta = [meta]
        quality = data.get("quality")
        if quality is not None:
            if not str(quality).isdigit():
                raise InvalidInputError("quality must be an integer")
            quality = int(quality)
        t0 = time.perf_counter()
        ids = await run_in_threadpool(lambda: tbl.add(blobs, metadata=meta, quality=quality))
        metrics.stage("ingest", time.perf_counter() - t0)
        metrics.items_added += len(ids)
        return {"ids": ids}

    @app.get("/tables/{name}/items")
    def list_items(name: str, where: str | None = None, offset: int = 0, limit: int = 50):
        """A page of items, newest first, with an optional metadata filter."""
        tbl = table(name)
        return {"items": tbl.items(where, offset=offset, limit=limit), "total": tbl.count_rows(where)}

    @app.get("/tables/{name}/items/{item_id}")
    def get_item(name: str, item_id: int):
        return table(name).get(item_id)

    @app.patch("/tables/{name}/items/{item_id}")
    async def update_item(name: str, item_id: int, request: Request):
        body = await body_json(request)
        tbl = table(name)
        return await run_in_threadpool(lambda: tbl.update(item_id, body.get("metadata", body)))

    def etag_of(blob: bytes, variant: str) -> str:
        # the stored bytes never change under an id, but a dropped and re-created table reuses ids:
        # tag by a hash of the bytes themselves
        return f'"{hashlib.sha256(blob).hexdigest()[:20]}-{variant}"'

    def image_response(request: Request, etag: str, render) -> Response:
        headers = {"ETag": etag, "Cache-Control": "private, max-age=3600"}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        body, mime = render()
        return Response(body, media_type=mime, headers=headers)

    @app.get("/tables/{name}/items/{item_id}/image")
    def get_image(name: str, item_id: int, request: Request, format: str = "png"):
        """The image decoded from the stored latents (PNG by default; jpeg/webp at quality 95)."""
        if format not in IMAGE_FORMATS:
            raise InvalidInputError(f"format must be one of {sorted(IMAGE_FORMATS)}")
        tbl = table(name)
        fmt, mime = IMAGE_FORMATS[format]
        blob = tbl.latent_bytes(item_id)

        def render():
            buf = io.BytesIO()
            t0 = time.perf_counter()
            image = tbl.reconstruct(item_id, data=blob)
            metrics.stage("decode", time.perf_counter() - t0)
            image.save(buf, fmt, **({"quality": 95} if fmt != "PNG" else {}))
            return buf.getvalue(), mime

        return image_response(request, etag_of(blob, format), render)

    @app.get("/tables/{name}/items/{item_id}/thumb")
    def get_thumb(name: str, item_id: int, request: Request, size: int = 192):
        """A JPEG thumbnail (longest side ``size``) decoded from the latents; kept in a small LRU cache."""
        if not 16 <= size <= 1024:
            raise InvalidInputError("size must be between 16 and 1024")
        tbl = table(name)
        blob = tbl.latent_bytes(item_id)
        etag = etag_of(blob, f"t{size}")

        def render():
            key = (name, etag)
            with thumbs_lock:
                if key in thumbs:
                    thumbs.move_to_end(key)
                    return thumbs[key], "image/jpeg"
            t0 = time.perf_counter()
            image = tbl.reconstruct(item_id, data=blob)
            metrics.stage("decode", time.perf_counter() - t0)
            image.thumbnail((size, size))
            buf = io.BytesIO()
            image.convert("RGB").save(buf, "JPEG", quality=85)
            with thumbs_lock:
                thumbs[key] = buf.getvalue()
                while len(thumbs) > THUMB_CACHE_ITEMS:
                    thumbs.popitem(last=False)
            metrics.thumbs_rendered += 1
            return buf.getvalue(), "image/jpeg"

        return image_response(request, etag, render)

    @app.get("/tables/{name}/items/{item_id}/latent")
    def get_latent(name: str, item_id: int):
        return Response(table(name).latent_bytes(item_id), media_type="application/octet-stream")

    @app.delete("/tables/{name}/items/{item_id}")
    def delete_item(name: str, item_id: int):
        return {"deleted": table(name).delete(item_id)}

    @app.post("/tables/{name}/delete")
    async def delete_where(name: str, request: Request):
        body = await body_json(request)
        tbl = table(name)
        ids, where = body.get("ids"), body.get("where")
        if ids is not None and not isinstance(ids, list):
            raise InvalidInputError("ids must be a list of ints")
        return {"deleted": await run_in_threadpool(lambda: tbl.delete(ids, where=where))}

    @app.get("/tables/{name}/count")
    def count(name: str, where: str | None = None):
        return {"count": table(name).count_rows(where)}

    @app.get("/tables/{name}/stats")
    def stats(name: str):
        return table(name).stats()

    @app.get("/tables/{name}/check")
    def check(name: str):
        return table(name).check()

    @app.post("/tables/{name}/optimize")
    def optimize(name: str, keep_hours: float = 24 * 7):
        from datetime import timedelta

        if not 0 <= keep_hours <= 24 * 365 * 100:
            raise InvalidInputError("keep_hours must be between 0 and 876000")
        return table(name).optimize(keep_versions_for=timedelta(hours=keep_hours))

    @app.post("/tables/{name}/reindex")
    def reindex(name: str):
        return table(name).reindex()

    @app.post("/tables/{name}/search")
    async def search(name: str, request: Request):
        tbl = table(name)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/"):
            data = await form(request)
            image = data.get("image")
            if image is None or isinstance(image, str):
                raise InvalidInputError("multipart search needs the query image in a part named 'image'")
            query: Any = await image.read()
            k, where, select = data.get("k", q.DEFAULT_K), data.get("where"), data.get("select")
            if select is not None:
                try:
                    select = json.loads(select)
                except ValueError as exc:
                    raise InvalidInputError("select must be a JSON list of column names") from exc
            if isinstance(k, str):
                if not k.strip().lstrip("-").isdigit():
                    raise InvalidInputError("k must be an integer")
                k = int(k)
        else:
            body = await body_json(request)
            if ("id" in body) == ("vector" in body):
                raise InvalidInputError("search JSON needs exactly one of 'id' or 'vector'")
            query = body["id"] if "id" in body else body["vector"]
            if "id" in body and (isinstance(query, bool) or not isinstance(query, int)):
                raise InvalidInputError("id must be an integer")
            if "vector" in body and not isinstance(query, list):
                raise InvalidInputError("vector must be a list of numbers")
            k, where, select = body.get("k", q.DEFAULT_K), body.get("where"), body.get("select")
        if where is not None and not isinstance(where, str):
            raise InvalidInputError("where must be a string")

        def run():
            builder = tbl.search(query).limit(k)
            if where:
                builder = builder.where(where)
            if select is not None:
                builder = builder.select(select)
            return builder.to_list()

        t0 = time.perf_counter()
        hits = await run_in_threadpool(run)
        metrics.stage("search", time.perf_counter() - t0)
        return {"hits": hits}

    @app.get("/tables/{name}/classifiers")
    def list_classifiers(name: str):
        return {"classifiers": table(name).classifiers()}

    @app.post("/tables/{name}/classifiers", status_code=201)
    async def fit_classifier(name: str, request: Request):
        body = await body_json(request)
        tbl = table(name)
        kwargs = {k: body[k] for k in ("epochs", "val_fraction", "seed") if k in body}
        clf_name, label = body.get("name"), body.get("label", "label")
        if not isinstance(label, str):
            raise InvalidInputError("label must be a column name")
        return await run_in_threadpool(lambda: tbl.fit_classifier(clf_name, label, **kwargs))

    @app.post("/tables/{name}/classify")
    async def classify(name: str, request: Request):
        tbl = table(name)
        if request.headers.get("content-type", "").startswith("multipart/"):
            data = await form(request)
            image = data.get("image")
            if image is None or isinstance(image, str):
                raise InvalidInputError("multipart classify needs the image in a part named 'image'")
            item: Any = await image.read()
            classifier = data.get("classifier")
        else:
            body = await body_json(request)
            item, classifier = body.get("id"), body.get("classifier")
            if isinstance(item, bool) or not isinstance(item, int):
                raise InvalidInputError("classify JSON needs an integer 'id' (or send a multipart 'image')")
        return await run_in_threadpool(lambda: tbl.classify(item, classifier=classifier))

    @app.post("/tables/{name}/classify_all")
    async def classify_all(name: str, request: Request):
        body = await body_json(request)
        tbl = table(name)
        return await run_in_threadpool(lambda: tbl.classify_all(body.get("classifier"), body.get("column")))

    @app.get("/metrics")
    def prometheus():
        return PlainTextResponse(metrics.render(db), media_type="text/plain; version=0.0.4")

    @app.get("/", response_class=HTMLResponse)
    def gallery():
        return HTMLResponse((Path(__file__).parent / "gallery.html").read_text())

    return app


def _authorise(request: Request, settings: Settings) -> None:
    if not settings.api_keys or request.url.path in ("/health", "/", "/docs", "/openapi.json"):
        return
    if request.method == "OPTIONS":  # CORS preflights carry no credentials; the request that follows does
        return
    key = request.headers.get("x-api-key") or request.query_params.get("key")  # ?key= for <img> tags
    auth = request.headers.get("authorization", "")
    if key is None and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        raise AuthError("this server needs an API key (header X-API-Key or Authorization: Bearer)")
    role = settings.api_keys.get(key)
    if role is None:
        raise AuthError("unknown API key")
    writes = request.method in ("POST", "PUT", "PATCH", "DELETE") and not request.url.path.endswith(READ_ONLY_POSTS)
    if writes and role != "rw":
        raise ForbiddenError("this API key is read-only")


def main() -> None:  # `python -m server.app` for a quick look; `mostore serve` is the real entry
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=8000)


if __name__ == "__main__":
    main()
