"""End to end through a real `mostore serve` process on a loopback port."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pytest
from PIL import Image

import mostore
from conftest import ServerProcess, natural_image, sample_files

pytestmark = pytest.mark.slow


def variants() -> list[bytes]:
    """200+ distinct images: the bundled samples, cropped and flipped."""
    out = []
    for f in sample_files():
        img = Image.open(f).convert("RGB").resize((64, 64))
        for op in ((lambda im: im, lambda im: im.transpose(Image.FLIP_LEFT_RIGHT),
                                lambda im: im.rotate(90), lambda im: im.crop((8, 8, 56, 56)),
                                lambda im: im.transpose(Image.FLIP_TOP_BOTTOM), lambda im: im.rotate(270))):
            buf = io.BytesIO()
            op(img).save(buf, "PNG")
            out.append((f.parent.name, buf.getvalue()))
    return out


def test_http_end_to_end_with_restart(tmp_path, tiny_codec_path):
    server = ServerProcess(tmp_path / "db", tiny_codec_path).start()
    try:
        db = mostore.connect(server.url)
        tbl = db.create_table("photos")
        items = variants()
        assert len(items) >= 200
        ids = []
        for start in range(0, len(items), 50):
            chunk = items[start : start + 50]
            ids += tbl.add([b for _, b in chunk], metadata=[{"label": lab} for lab, _ in chunk])
        assert len(ids) == len(items) == tbl.count_rows() and len(set(ids)) == len(ids)

        query = items[7][1]
        hits = tbl.search(query).limit(5).to_list()
        assert hits[0]["id"] == ids[7]
        label = items[7][0]
        hits = tbl.search(query).where(f"label = '{label}'").limit(10).to_list()
        assert len(hits) == 10 and all(h["metadata"]["label"] == label for h in hits)
        img = tbl.reconstruct(ids[7])
        assert img.size == (64, 64)
        assert tbl.delete(ids[7]) == 1
        assert all(h["id"] != ids[7] for h in tbl.search(query).limit(20).to_list())
        before = tbl.search(ids[0]).limit(10).to_list()
        stats = tbl.stats()
    finally:
        server.stop()

    server = ServerProcess(tmp_path / "db", tiny_codec_path).start()
    try:
        tbl = mostore.connect(server.url).open_table("photos")
        assert tbl.count_rows() == len(items) - 1
        assert tbl.search(ids[0]).limit(10).to_list() == before
        assert tbl.stats()["latent_bytes"] == stats["latent_bytes"]
        assert np.asarray(tbl.reconstruct(ids[8])).shape == (64, 64, 3)
    finally:
        server.stop()


def test_http_errors_are_json(tmp_path, tiny_codec_path):
    server = ServerProcess(tmp_path / "db", tiny_codec_path).start()
    url = server.url
    try:
        httpx.post(url + "/tables", json={"name": "t"}).raise_for_status()
        png = io.BytesIO()
        Image.fromarray(natural_image(1)).save(png, "PNG")
        r = httpx.post(url + "/tables/t/items", files=[("files", ("a.png", png.getvalue()))],
                       data={"metadata": json.dumps({"label": "a"})})
        assert r.json() == {"ids": [1]}
        cases = [
            ("GET", "/tables/nope/stats", {}, 404, "NotFoundError"),
            ("GET", "/tables/t/items/99", {}, 404, "NotFoundError"),
            ("GET", "/tables/t/items/abc", {}, 422, "InvalidInputError"),
            ("POST", "/tables", {"json": {"name": "../x"}}, 400, "InvalidInputError"),
            ("POST", "/tables", {"json": {"name": "t"}}, 409, "AlreadyExistsError"),
            ("POST", "/tables", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "InvalidInputError"),
            ("POST", "/tables/t/items", {"files": [("files", ("a.png", b""))]}, 400, "InvalidImageError"),
            ("POST", "/tables/t/items", {"files": [("files", ("a.jpg", b"hello"))]}, 400, "InvalidImageError"),
            ("POST", "/tables/t/items", {"files": [("files", ("a.png", png.getvalue()))], "data": {"metadata": "{bad"}}, 400, "MetadataError"),
            ("POST", "/tables/t/search", {"json": {"id": 1, "k": 0}}, 400, "InvalidInputError"),
            ("POST", "/tables/t/search", {"json": {"id": 1, "where": "label = 'a'; DROP TABLE t"}}, 400, "FilterError"),
            ("POST", "/tables/t/search", {"json": {"vector": [1.0, 2.0]}}, 400, "InvalidInputError"),
            ("POST", "/tables/t/search", {"json": {"vector": "x"}}, 400, "InvalidInputError"),
            ("POST", "/tables/t/search", {"json": {}}, 400, "InvalidInputError"),
            ("DELETE", "/tables/t/items/42", {}, 404, "NotFoundError"),
            ("GET", "/no/such/route", {}, 404, "NotFoundError"),
        ]
        for method, path, kw, status, name in cases:
            r = httpx.request(method, url + path, **kw)
            assert (r.status_code, r.json()["error"]) == (status, name), (path, r.text)
            assert r.json()["message"]
        assert httpx.get(url + "/tables/t/count").json() == {"count": 1}
        assert httpx.get(url + "/tables/t/items/1").json()["metadata"] == {"label": "a"}
        r = httpx.get(url + "/tables/t/items/1/image")
        assert r.headers["content-type"] == "image/png" and Image.open(io.BytesIO(r.content)).size == (48, 40)
        metrics = httpx.get(url + "/metrics").text
        assert 'mostore_http_requests_total{method="POST",route="/tables/{name}/items",status="200"}' in metrics
        assert 'mostore_table_rows{table="t"} 1' in metrics
        assert httpx.get(url + "/docs").status_code == 200
        assert "mostore" in httpx.get(url + "/").text
    finally:
        server.stop()


def test_api_keys(tmp_path, tiny_codec_path):
    server = ServerProcess(tmp_path / "db", tiny_codec_path, env={"MOSTORE_API_KEYS": "writer,reader:ro"}).start()
    try:
        assert httpx.get(server.url + "/health").status_code == 200
        r = httpx.get(server.url + "/tables")
        assert r.status_code == 401 and r.json()["error"] == "AuthError"
        assert httpx.get(server.url + "/tables", headers={"X-API-Key": "wrong"}).status_code == 401
        assert httpx.get(server.url + "/tables", headers={"X-API-Key": "reader"}).status_code == 200
        r = httpx.post(server.url + "/tables", json={"name": "t"}, headers={"X-API-Key": "reader"})
        assert r.status_code == 403 and r.json()["error"] == "ForbiddenError"
        writer = mostore.connect(server.url, api_key="writer")
        writer.create_table("t").add([natural_image(2)])
        reader = mostore.connect(server.url, api_key="reader")
        assert reader.open_table("t").search(1).limit(1).to_list()[0]["id"] == 1
        with pytest.raises(mostore.ForbiddenError):
            reader.open_table("t").delete(1)
        assert writer.open_table("t").count_rows() == 1
    finally:
        server.stop()


def test_pixel_and_upload_limits(tmp_path, tiny_codec_path):
    env = {"MOSTORE_MAX_PIXELS": "5000", "MOSTORE_MAX_UPLOAD_BYTES": "200000"}
    server = ServerProcess(tmp_path / "db", tiny_codec_path, env=env).start()
    try:
        httpx.post(server.url + "/tables", json={"name": "t"}).raise_for_status()
        big = io.BytesIO()
        Image.new("RGB", (100, 100), "red").save(big, "PNG")
        r = httpx.post(server.url + "/tables/t/items", files=[("files", ("big.png", big.getvalue()))])
        assert (r.status_code, r.json()["error"]) == (413, "ImageTooLargeError")
        r = httpx.post(server.url + "/tables/t/items", files=[("files", ("huge.bin", b"\0" * 300_000))])
        assert (r.status_code, r.json()["error"]) == (413, "ImageTooLargeError")
        small = io.BytesIO()
        Image.new("RGB", (50, 50), "red").save(small, "PNG")
        r = httpx.post(server.url + "/tables/t/items", files=[("files", ("ok.png", small.getvalue()))])
        assert r.json() == {"ids": [1]}
        assert httpx.get(server.url + "/tables/t/count").json() == {"count": 1}
    finally:
        server.stop()


def test_cors_is_closed_unless_configured_and_the_server_binds_loopback(tmp_path, tiny_codec):
    from fastapi.testclient import TestClient

    from mostore import cli
    from server.app import Settings, create_app

    evil, app_origin = {"Origin": "https://evil.example"}, {"Origin": "https://app.example"}
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    closed = TestClient(create_app(Settings(db=tmp_path / "a"), codec=tiny_codec))
    assert "access-control-allow-origin" not in closed.get("/tables", headers=evil).headers
    assert "access-control-allow-origin" not in closed.options("/tables", headers={**evil, **preflight}).headers
    settings = Settings(db=tmp_path / "b", cors_origins=["https://app.example"], api_keys={"k": "rw"})
    opened = TestClient(create_app(settings, codec=tiny_codec))
    r = opened.options("/tables", headers={**app_origin, **preflight})  # a preflight needs no key
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    r = opened.get("/tables", headers={**app_origin, "X-API-Key": "k"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
    assert opened.get("/tables", headers=app_origin).status_code == 401  # the request itself still needs it
    assert "access-control-allow-origin" not in opened.get("/tables", headers={**evil, "X-API-Key": "k"}).headers
    assert cli.build_parser().parse_args(["serve", "--db", "x"]).host == "127.0.0.1"


def test_metrics_histograms_and_request_logs(tmp_path, tiny_codec, caplog):
    import logging

    from fastapi.testclient import TestClient

    from server.app import Settings, create_app

    client = TestClient(create_app(Settings(db=tmp_path / "m"), codec=tiny_codec))
    client.post("/tables", json={"name": "t"}).raise_for_status()
    png = io.BytesIO()
    Image.fromarray(natural_image(3)).save(png, "PNG")
    client.post("/tables/t/items", files=[("files", ("a.png", png.getvalue()))]).raise_for_status()
    with caplog.at_level(logging.INFO, logger="mostore.http"):
        r = client.post("/tables/t/search", json={"id": 1, "k": 1}, headers={"X-Request-Id": "req-42"})
    assert r.headers["x-request-id"] == "req-42"
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "mostore.http"]
    assert lines[-1]["request_id"] == "req-42" and lines[-1]["route"] == "/tables/{name}/search"
    assert lines[-1]["status"] == 200 and lines[-1]["ms"] > 0
    text = client.get("/metrics").text
    assert 'mostore_http_request_duration_seconds_bucket{method="POST",route="/tables/{name}/search",le="+Inf"} 1' in text
    assert "mostore_ingest_duration_seconds_count 1" in text and "mostore_search_duration_seconds_count 1" in text
    assert 'mostore_table_rows{table="t"} 1' in text and 'mostore_table_latent_bytes{table="t"}' in text
