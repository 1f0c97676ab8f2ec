from __future__ import annotations

import pytest

from mostore.errors import FilterError
from mostore.filters import to_sql

COLS = {"label": "string", "year": "numeric", "ok": "bool", "id": "numeric"}


@pytest.mark.parametrize(
    "text, sql",
    [
        ("label = 'cat'", "label = 'cat'"),
        ("label = 'it''s'", "label = 'it''s'"),
        ("year >= 2020 AND label != 'dog'", "(year >= 2020 AND label != 'dog')"),
        ("year <> 3", "year != 3"),
        ("label IN ('a', 'b') OR NOT ok = TRUE", "(label IN ('a', 'b') OR (NOT ok = TRUE))"),
        ("label IS NOT NULL", "label IS NOT NULL"),
        ("label like 'c%'", "label LIKE 'c%'"),
        ("year BETWEEN 1 AND 3", "year BETWEEN 1 AND 3"),
        ("(id < 5)", "id < 5"),
        ("id NOT IN (1, 2)", "id NOT IN (1, 2)"),
    ],
)
def test_valid_filters(text, sql):
    assert to_sql(text, COLS) == sql


@pytest.mark.parametrize(
    "text",
    [
        "label = 'cat'; DROP TABLE photos",
        "label = 'cat' -- comment",
        "label = 'cat' /* x */",
        "nosuch = 1",
        "year = 'text'",
        "label = 3",
        "lower(label) = 'cat'",
        "label = (SELECT 1)",
        "label",
        "label = ",
        "",
        "   ",
        "1 = 1",
        "label = 'unterminated",
        "ok = 1",
        "(" * 100 + "id = 1" + ")" * 100,
        "year LIKE 'x'",
        "id = 1 id = 2",
        "x" * 5000,
    ],
)
def test_rejected_filters(text):
    with pytest.raises(FilterError):
        to_sql(text, COLS)


def test_filter_must_be_a_string():
    with pytest.raises(FilterError):
        to_sql(3, COLS)  # type: ignore[arg-type]
