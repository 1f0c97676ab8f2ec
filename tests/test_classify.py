"""Classification from stored latents (entropy decode only), local and remote."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import natural_image
from mostore.errors import InvalidInputError, NotFoundError


def coloured(seed: int, colour: str) -> np.ndarray:
    img = natural_image(seed, (48, 48)).astype(np.int16) // 3
    channel = {"red": 0, "green": 1, "blue": 2}[colour]
    img[..., channel] += 160
    return np.clip(img, 0, 255).astype(np.uint8)


def test_fit_and_classify(db):
    tbl = db.create_table("c")
    colours = ["red", "green", "blue"]
    items = [coloured(i, colours[i % 3]) for i in range(30)]
    tbl.add(items, metadata=[{"label": colours[i % 3]} for i in range(30)])
    info = tbl.fit_classifier("colour", label="label", epochs=40)
    assert info["classes"] == ["blue", "green", "red"] and info["n_val"] == 6 and info["n_train"] == 24
    assert info["val_accuracy"] >= 0.8
    result = tbl.classify(coloured(100, "green"), classifier="colour")
    assert result["label"] == "green" and abs(sum(result["scores"].values()) - 1) < 1e-5
    assert tbl.classify(1, classifier="colour")["label"] == "red"
    assert [c["name"] for c in tbl.classifiers()] == ["colour"]
    out = tbl.classify_all("colour")
    assert out["column"] == "colour_pred" and sum(out["counts"].values()) == 30
    assert tbl.count_rows("colour_pred = 'red'") >= 8


def test_classifier_errors(db, images):
    tbl = db.create_table("e")
    tbl.add(images[:3], metadata=[{"label": "a"}, {"label": "a"}, {"label": "b"}])
    with pytest.raises(InvalidInputError):
        tbl.fit_classifier("x", label="nosuch")
    with pytest.raises(InvalidInputError):  # class 'b' has one example
        tbl.fit_classifier("x", label="label")
    with pytest.raises(NotFoundError):
        tbl.classify(1, classifier="missing")
    with pytest.raises(InvalidInputError):
        tbl.fit_classifier("../x", label="label")
