"""The web gallery in a real browser: headless Chromium (Debian's package) driven by Playwright,
against a real server on loopback with API keys on. The screenshot lands in test-artifacts/.

CI installs chromium (`make test`); elsewhere the test is skipped when no chromium is found,
unless MOSTORE_REQUIRE_BROWSER=1 (set by .ci/run), where a missing browser fails it.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal

import pytest

import mostore
from benchmarks import reliability as rel
from conftest import ROOT, sample_files

pytestmark = pytest.mark.slow
ARTIFACTS = ROOT / "test-artifacts"
KEY = "gallery-key"


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("MOSTORE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed (apt-get install chromium chromium-driver)")
        pytest.skip("no chromium on this machine")
    return path


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    classes = sorted({f.parent.name for f in sample_files()})[:3]
    files = [f for c in classes for f in [g for g in sample_files() if g.parent.name == c][:4]]  # 12 photos
    db = tmp_path_factory.mktemp("gallery") / "db"
    tbl = mostore.connect(db).create_table("photos")
    ids = tbl.add([str(f) for f in files], metadata=[{"label": f.parent.name, "file": f.name} for f in files])
    tbl.fit_classifier("kind", "label", epochs=2, val_fraction=0.0)
    proc, url = rel.start_server(db, "default", api_keys={KEY: "rw"})
    yield url, dict(zip(ids, files))
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)


def _images_loaded(page, selector: str) -> list[list[int]]:
    return page.eval_on_selector_all(selector, "els => els.map(e => [e.complete ? 1 : 0, e.naturalWidth, e.naturalHeight])")


def test_gallery_browse_upload_search_drop_open(gallery):
    from playwright.sync_api import expect, sync_playwright

    url, stored = gallery
    chromium = _chromium()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{url}/?key={KEY}")

        # browse: a grid of thumbnails decoded from the latents
        cards = page.locator("#grid .card")
        expect(cards).to_have_count(len(stored))
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth)")
        assert all(ok and w > 0 for ok, w, _ in _images_loaded(page, "#grid img"))
        expect(page.locator("#status")).to_contain_text(f"{len(stored)} items")

        # upload one more picture
        new_file = sample_files()[-1]
        page.set_input_files("#upload", str(new_file))
        expect(page.locator("#status")).to_contain_text("added 1")
        expect(cards).to_have_count(len(stored) + 1)

        # search by choosing a file: the stored copy of that photo comes first
        query_id, query_file = next(iter(stored.items()))
        page.set_input_files("#file", str(query_file))
        expect(page.locator("#status")).to_contain_text("matches")
        assert int(cards.first.get_attribute("data-id")) == query_id

        # search by dropping a file on the drop zone, with a metadata filter
        other_id, other_file = list(stored.items())[5]
        page.fill("#where", f"label = '{other_file.parent.name}'")
        data = base64.b64encode(other_file.read_bytes()).decode()
        transfer = page.evaluate_handle(
            """b64 => { const bin = atob(b64), arr = new Uint8Array(bin.length);
                        for (let i = 0; i < bin.length; i++) arr[i] = bin.charCodeAt(i);
                        const dt = new DataTransfer(); dt.items.add(new File([arr], "q.jpg", {type: "image/jpeg"}));
                        return dt; }""", data)
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        page.wait_for_function(f"document.querySelector('#grid .card')?.dataset.id === '{other_id}'")
        labels = page.eval_on_selector_all("#grid .card .meta", "els => els.map(e => e.textContent)")
        assert len(labels) == 4 and all(f"label: {other_file.parent.name}" in t for t in labels)
        assert "· 1.000" in cards.first.inner_text() or "· 0.99" in cards.first.inner_text()  # hits carry scores

        # open a result: the full reconstruction renders at the stored size, with its details
        cards.first.click()
        full = page.locator("#detail #full")
        expect(full).to_be_visible()
        page.wait_for_function("document.querySelector('#full').complete && document.querySelector('#full').naturalWidth")
        item = mostore.connect(url, api_key=KEY).open_table("photos").get(other_id)
        assert _images_loaded(page, "#full")[0] == [1, item["width"], item["height"]]
        detail = page.locator("#detail")
        expect(detail).to_contain_text(f"{item['nbytes']} bytes")
        expect(detail).to_contain_text("bpp")
        expect(detail).to_contain_text("classifier kind")
        page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

        # more like this
        page.click("#like")
        expect(page.locator("#status")).to_contain_text("matches")
        browser.close()
    assert not errors, errors
    assert (ARTIFACTS / "gallery.png").stat().st_size > 10_000


def test_thumbnails_are_cached_and_tagged(gallery):
    import httpx

    url, stored = gallery
    item_id = next(iter(stored))
    headers = {"X-API-Key": KEY}
    first = httpx.get(f"{url}/tables/photos/items/{item_id}/thumb?size=128", headers=headers)
    assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
    etag = first.headers["etag"]
    again = httpx.get(f"{url}/tables/photos/items/{item_id}/thumb?size=128", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    other = httpx.get(f"{url}/tables/photos/items/{item_id}/thumb?size=64", headers=headers)
    assert other.headers["etag"] != etag
    assert httpx.get(f"{url}/tables/photos/items/{item_id}/thumb?size=5000", headers=headers).status_code == 400
    assert httpx.get(f"{url}/tables/photos/items/{item_id}/thumb").status_code == 401
    metrics = httpx.get(f"{url}/metrics", headers=headers).text
    assert "mostore_thumbnails_rendered_total" in metrics
