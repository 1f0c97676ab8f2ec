"""The public API, run against the embedded store and the remote client alike."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import mostore
from mostore.errors import (
    AlreadyExistsError,
    FilterError,
    InvalidImageError,
    InvalidInputError,
    MetadataError,
    NotFoundError,
)


def test_tables(db):
    assert db.table_names() == []
    tbl = db.create_table("photos")
    assert db.table_names() == ["photos"]
    with pytest.raises(AlreadyExistsError):
        db.create_table("photos")
    assert db.create_table("photos", exist_ok=True).name == "photos"
    assert db.open_table("photos").count_rows() == 0
    with pytest.raises(NotFoundError):
        db.open_table("nope")
    for bad in ("../etc", "a/b", "", "x" * 100, "-a", "a b"):
        with pytest.raises(InvalidInputError):
            db.create_table(bad)
    db.drop_table("photos")
    assert db.table_names() == [] and tbl.name == "photos"
    with pytest.raises(NotFoundError):
        db.drop_table("photos")


def test_add_get_reconstruct_delete(db, images):
    tbl = db.create_table("t")
    ids = tbl.add(images[:4], metadata=[{"label": "a", "n": i} for i in range(4)])
    assert ids == [1, 2, 3, 4] and tbl.count_rows() == 4
    item = tbl.get(2)
    assert item["metadata"] == {"label": "a", "n": 1}
    assert (item["width"], item["height"]) == (48, 40) and item["nbytes"] > 40 and item["bpp"] > 0
    img = tbl.reconstruct(2)
    assert isinstance(img, Image.Image) and img.size == (48, 40)
    assert tbl.delete(2) == 1
    with pytest.raises(NotFoundError):
        tbl.get(2)
    with pytest.raises(NotFoundError):
        tbl.reconstruct(2)
    with pytest.raises(NotFoundError):
        tbl.delete(2)
    # ids are never reused
    assert tbl.add([images[4]]) == [5]
    assert tbl.delete(where="n >= 2") == 2
    assert tbl.count_rows() == 2
    assert tbl.count_rows("label = 'a'") == 1


def test_single_item_and_forms(db, images, tmp_path):
    tbl = db.create_table("forms")
    p = tmp_path / "x.png"
    Image.fromarray(images[0]).save(p)
    import io

    buf = io.BytesIO()
    Image.fromarray(images[1]).save(buf, "JPEG")
    ids = tbl.add([str(p), buf.getvalue(), Image.fromarray(images[2]), images[3]])
    assert len(ids) == 4
    assert tbl.add(images[5], metadata={"label": "solo"}) == [5]
    assert tbl.get(5)["metadata"] == {"label": "solo"}


def test_search_by_image_id_vector_and_filter(db, images):
    tbl = db.create_table("s")
    ids = tbl.add(images, metadata=[{"label": "even" if i % 2 == 0 else "odd", "n": i} for i in range(12)])
    hits = tbl.search(images[3]).limit(3).to_list()
    assert hits[0]["id"] == ids[3] and hits[0]["score"] > 0.99
    assert set(hits[0]) == {"id", "score", "metadata"}
    hits = tbl.search(ids[5]).limit(12).to_list()
    assert hits[0]["id"] == ids[5] and len(hits) == 12
    assert [h["score"] for h in hits] == sorted([h["score"] for h in hits], reverse=True)
    # prefilter: exactly k when k rows match, never rows that don't
    hits = tbl.search(images[3]).where("label = 'even'").limit(6).to_list()
    assert len(hits) == 6 and all(h["metadata"]["label"] == "even" for h in hits)
    assert len(tbl.search(ids[0]).where("n < 3").limit(10).to_list()) == 3
    assert tbl.search(ids[0]).where("n > 100").limit(10).to_list() == []
    dim = tbl.stats()["embedding_dim"]
    vec = np.random.default_rng(0).normal(size=dim)
    assert len(tbl.search(vec.tolist()).limit(5).to_list()) == 5
    df = tbl.search(ids[0]).limit(4).to_pandas()
    assert list(df["id"])[0] == ids[0] and "label" in df.columns


def test_bad_queries(db, images):
    tbl = db.create_table("q")
    tbl.add(images[:3], metadata=[{"label": "x"}] * 3)
    dim = tbl.stats()["embedding_dim"]
    for k in (0, -1, 10**9, "3", 2.5, True):
        with pytest.raises(InvalidInputError):
            tbl.search(1).limit(k).to_list()
    for vec in ([0.0] * (dim - 1), [float("nan")] * dim, [float("inf")] + [0.0] * (dim - 1), [0.0] * dim):
        with pytest.raises(InvalidInputError):
            tbl.search(vec).to_list()
    for bad in ("label = 'x'; DROP TABLE q", "nosuch = 1", "label = 3", "sleep(10) = 1"):
        with pytest.raises(FilterError):
            tbl.search(1).where(bad).to_list()
    with pytest.raises(NotFoundError):
        tbl.search(99).to_list()
    with pytest.raises(InvalidImageError):
        tbl.search(b"garbage").to_list()
    assert tbl.count_rows() == 3


def test_bad_adds_change_nothing(db, images):
    tbl = db.create_table("bad")
    tbl.add(images[:2], metadata=[{"label": "a"}, {"label": "b"}])
    before = [tbl.get(i) for i in (1, 2)]
    for items, meta, err in [
        ([images[2], b""], None, InvalidImageError),
        ([b"not an image"], None, InvalidImageError),
        ([images[2]], [{"label": 3}], MetadataError),  # wrong type for an existing column
        ([images[2]], [{"a": {"deep": 1}}], MetadataError),
        ([images[2]], [{"id": 1}], MetadataError),
        ([images[2], images[3]], [{"label": "x"}], MetadataError),  # count mismatch
        ([images[2]], [{"label": "s" * 100_000}], MetadataError),
    ]:
        with pytest.raises(err):
            tbl.add(items, metadata=meta)
    assert tbl.count_rows() == 2
    assert [tbl.get(i) for i in (1, 2)] == before
    assert tbl.add([images[4]]) == [3]


def test_update_metadata(db, images):
    tbl = db.create_table("u")
    tbl.add(images[:2], metadata=[{"label": "a"}, {"label": "b"}])
    item = tbl.update(1, {"label": "z", "rating": 4})
    assert item["metadata"] == {"label": "z", "rating": 4}
    assert tbl.count_rows("rating = 4") == 1
    with pytest.raises(NotFoundError):
        tbl.update(99, {"label": "q"})
    with pytest.raises(MetadataError):
        tbl.update(1, {"label": 5})


def test_stats(db, images):
    tbl = db.create_table("st")
    tbl.add(images[:3])
    report = tbl.check()
    assert report["ok"] and report["rows"] == 3 and report["damaged"] == []
    assert tbl.optimize()["version"] >= 1
    s = tbl.stats()
    assert s["rows"] == 3 and s["index_count"] == 3 and s["index_kind"] == "flat"
    assert s["latent_bytes"] > 0 and 0 < s["bpp"] < 24 and len(s["codec_id"]) == 16


def test_table_refuses_other_weights(tmp_path, tiny_codec_path, images):
    import shutil

    from conftest import make_tiny_model
    from mostore.codec.model import Codec, save_checkpoint

    weights = tmp_path / "w.pt"
    shutil.copy(tiny_codec_path, weights)
    db = mostore.connect(tmp_path / "db")
    tbl = db.create_table("t", codec=Codec.from_checkpoint(weights))
    tbl.add(images[:2])
    save_checkpoint(make_tiny_model(seed=5), weights)  # other weights under the same name
    with pytest.raises(mostore.CodecMismatchError):
        mostore.connect(tmp_path / "db").open_table("t")
    # given the right codec explicitly, the table opens and decodes
    again = mostore.connect(tmp_path / "db", codec=Codec.from_checkpoint(tiny_codec_path))
    assert again.open_table("t").reconstruct(1).size == (48, 40)


def test_null_only_metadata_key(db, images):
    tbl = db.create_table("n")
    assert tbl.add([images[0]], metadata=[{"x": None, "label": "a"}]) == [1]
    assert tbl.get(1)["metadata"] == {"label": "a"}
    tbl.add([images[1]], metadata=[{"x": 3}])
    assert tbl.count_rows("x = 3") == 1


def test_a_corrupted_row_is_reported_and_the_rest_works(tmp_path, tiny_codec, images):
    db = mostore.connect(tmp_path / "db", codec=tiny_codec)
    tbl = db.create_table("t")
    tbl.add(images[:4])
    assert tbl.check()["ok"]
    blob = bytearray(tbl.latent_bytes(2))
    blob[-3] ^= 0xFF
    tbl._lt.update(where="id = 2", values={"latent": bytes(blob)})
    with pytest.raises(mostore.CorruptBitstreamError, match="item 2"):
        tbl.reconstruct(2)
    # bytes the caller already read (the server's image routes) are checked the same way
    with pytest.raises(mostore.CorruptBitstreamError, match="item 2"):
        tbl.reconstruct(2, data=tbl.latent_bytes(2))
    assert tbl.reconstruct(3, data=tbl.latent_bytes(3)).tobytes() == tbl.reconstruct(3).tobytes()
    with pytest.raises(mostore.CorruptBitstreamError):
        tbl.search(2).to_list()
    assert tbl.reconstruct(3).size == (48, 40)
    assert [h["id"] for h in tbl.search(3).limit(4).to_list()][0] == 3
    report = tbl.check()
    assert not report["ok"] and [d["id"] for d in report["damaged"]] == [2]
    assert tbl.reindex()["indexed"] == 3  # the damaged row stays out of the index
    # a filter whose matching ids include the damaged (unindexed) row still searches the rest
    assert sorted(h["id"] for h in tbl.search(3).where("id <= 3").limit(4).to_list()) == [1, 3]


def test_optimize_keeps_everything(tmp_path, tiny_codec, images):
    from datetime import timedelta

    tbl = mostore.connect(tmp_path / "db", codec=tiny_codec).create_table("t")
    for img in images[:5]:
        tbl.add([img])
    tbl.delete(1)
    before = [h["id"] for h in tbl.search(2).limit(10).to_list()]
    result = tbl.optimize(keep_versions_for=timedelta(0))
    assert result["fragments_after"] is None or result["fragments_after"] <= result["fragments_before"]
    assert [h["id"] for h in tbl.search(2).limit(10).to_list()] == before
    assert tbl.count_rows() == 4 and tbl.check()["ok"]


def test_items_pages_newest_first_with_a_filter(db, images):
    tbl = db.create_table("paged")
    ids = tbl.add(images[:7], metadata=[{"n": i, "odd": i % 2 == 1} for i in range(7)])
    assert [it["id"] for it in tbl.items(limit=3)] == ids[::-1][:3]
    assert [it["id"] for it in tbl.items(limit=3, offset=6)] == [ids[0]]
    assert [it["metadata"]["n"] for it in tbl.items("odd = TRUE")] == [5, 3, 1]
    assert "latent" not in tbl.items(limit=1)[0]
    for bad in ({"limit": -1}, {"limit": 10**6}, {"offset": -2}):
        with pytest.raises(mostore.InvalidInputError):
            tbl.items(**bad)
    with pytest.raises(mostore.FilterError):
        tbl.items("n = 'x'; DROP TABLE paged")


def test_select_returns_chosen_columns_or_ids_alone(db, images):
    tbl = db.create_table("sel")
    tbl.add(images[:4], metadata=[{"a": i, "b": f"x{i}"} for i in range(4)])
    full = tbl.search(images[1]).limit(3).to_list()
    only_a = tbl.search(images[1]).limit(3).select(["a"]).to_list()
    bare = tbl.search(images[1]).limit(3).select([]).to_list()
    assert [h["id"] for h in full] == [h["id"] for h in only_a] == [h["id"] for h in bare]
    assert all(set(h["metadata"]) == {"a"} for h in only_a) and all(h["metadata"] == {} for h in bare)
    with pytest.raises(mostore.InvalidInputError):
        tbl.search(images[1]).select(["nope"]).to_list()


def test_a_repeated_filter_sees_new_and_changed_rows(db, images):
    """Filter results are remembered per table version: a write must show at once."""
    tbl = db.create_table("refilter")
    tbl.add(images[:3], metadata=[{"tag": "a"}, {"tag": "b"}, {"tag": "a"}])
    first = {h["id"] for h in tbl.search(images[0]).where("tag = 'a'").limit(10).to_list()}
    assert first == {1, 3}
    tbl.add(images[3], metadata={"tag": "a"})
    tbl.update(2, {"tag": "a"})
    tbl.delete(1)
    again = {h["id"] for h in tbl.search(images[0]).where("tag = 'a'").limit(10).to_list()}
    assert again == {2, 3, 4}
