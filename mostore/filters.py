"""Where-filters: a small, checked grammar, re-emitted as canonical SQL for Lance.

User text is never handed to the SQL engine as is. It is tokenised and parsed against::

    expr       := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | '(' expr ')' | predicate
    predicate  := column op literal
                | column [NOT] IN '(' literal (',' literal)* ')'
                | column IS [NOT] NULL
                | column [NOT] LIKE string
                | column [NOT] BETWEEN literal AND literal
    op         := = | != | <> | < | <= | > | >=
    literal    := 'string' (quote doubled inside) | number | TRUE | FALSE

Columns must exist in the table; literals must fit the column's type. No functions, no
sub-queries, no semicolons, no comments: anything else raises :class:`FilterError`.

>>> to_sql("label = 'cat' AND year >= 2020", {"label": "string", "year": "numeric"})
"(label = 'cat' AND year >= 2020)"
"""

from __future__ import annotations

import re

from mostore.errors import FilterError

MAX_FILTER_CHARS = 4096
MAX_DEPTH = 32
MAX_IN_ITEMS = 10_000
_TOKEN = re.compile(
    r"\s*(?:(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(?P<str>'(?:[^']|'')*')"
    r"|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),])|(?P<word>[A-Za-z_][A-Za-z0-9_]*))"
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "BETWEEN", "TRUE", "FALSE"}
#: kinds of column types the grammar knows
NUMERIC, STRING, BOOL = "numeric", "string", "bool"


def _tokens(text: str) -> list[tuple[str, str]]:
    pos, out = 0, []
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"unexpected character {text[pos:].lstrip()[:1]!r} at position {pos} in filter")
        kind = m.lastgroup
        value = m.group(kind)
        if kind == "word" and value.upper() in _KEYWORDS:
            kind, value = "kw", value.upper()
        out.append((kind, value))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], columns: dict[str, str]):
        self.t = tokens
        self.i = 0
        self.columns = columns

    def peek(self, kind: str | None = None, value: str | None = None) -> bool:
        if self.i >= len(self.t):
            return False
        k, v = self.t[self.i]
        return (kind is None or k == kind) and (value is None or v == value)

    def take(self, kind: str, value: str | None = None) -> str:
        if not self.peek(kind, value):
            got = self.t[self.i][1] if self.i < len(self.t) else "end of filter"
            raise FilterError(f"expected {value or kind} in filter, found {got!r}")
        self.i += 1
        return self.t[self.i - 1][1]

    def expr(self, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise FilterError(f"filter nests deeper than {MAX_DEPTH}")
        parts = [self.term(depth)]
        while self.peek("kw", "OR"):
            self.i += 1
            parts.append(self.term(depth))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def term(self, depth: int) -> str:
        parts = [self.factor(depth)]
        while self.peek("kw", "AND"):
            self.i += 1
            parts.append(self.factor(depth))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def factor(self, depth: int) -> str:
        if self.peek("kw", "NOT"):
            self.i += 1
            return f"(NOT {self.factor(depth + 1)})"
        if self.peek("punct", "("):
            self.i += 1
            inner = self.expr(depth + 1)
            self.take("punct", ")")
            return inner
        return self.predicate()

    def literal(self, column: str) -> str:
        kind = self.columns[column]
        if self.peek("str"):
            if kind != STRING:
                raise FilterError(f"column {column!r} is {kind}; a quoted string doesn't compare with it")
            return self.take("str")
        if self.peek("num"):
            if kind != NUMERIC:
                raise FilterError(f"column {column!r} is {kind}; compare it with a {kind} value")
            return self.take("num")
        if self.peek("kw", "TRUE") or self.peek("kw", "FALSE"):
            if kind != BOOL:
                raise FilterError(f"column {column!r} is {kind}; TRUE/FALSE only compare with bool columns")
            return self.take("kw")
        got = self.t[self.i][1] if self.i < len(self.t) else "end of filter"
        raise FilterError(f"expected a value for {column!r}, found {got!r}")

    def predicate(self) -> str:
        if not self.peek("word"):
            got = self.t[self.i][1] if self.i < len(self.t) else "end of filter"
            raise FilterError(f"expected a column name in filter, found {got!r}")
        col = self.take("word")
        if col not in self.columns:
            raise FilterError(f"unknown column {col!r} in filter; columns: {sorted(self.columns)}")
        if self.peek("punct", "("):
            raise FilterError(f"function calls are not allowed in filters ({col}(...))")
        if self.peek("op"):
            op = self.take("op")
            return f"{col} {'!=' if op == '<>' else op} {self.literal(col)}"
        if self.peek("kw", "IS"):
            self.i += 1
            neg = self.peek("kw", "NOT")
            if neg:
                self.i += 1
            self.take("kw", "NULL")
            return f"{col} IS {'NOT ' if neg else ''}NULL"
        neg = self.peek("kw", "NOT")
        if neg:
            self.i += 1
        prefix = "NOT " if neg else ""
        if self.peek("kw", "IN"):
            self.i += 1
            self.take("punct", "(")
            items = [self.literal(col)]
            while self.peek("punct", ","):
                self.i += 1
                items.append(self.literal(col))
                if len(items) > MAX_IN_ITEMS:
                    raise FilterError(f"IN lists are limited to {MAX_IN_ITEMS} values")
            self.take("punct", ")")
            return f"{col} {prefix}IN ({', '.join(items)})"
        if self.peek("kw", "LIKE"):
            self.i += 1
            if self.columns[col] != STRING:
                raise FilterError(f"LIKE needs a string column; {col!r} is {self.columns[col]}")
            return f"{col} {prefix}LIKE {self.literal(col)}"
        if self.peek("kw", "BETWEEN"):
            self.i += 1
            lo = self.literal(col)
            self.take("kw", "AND")
            hi = self.literal(col)
            return f"{col} {prefix}BETWEEN {lo} AND {hi}"
        got = self.t[self.i][1] if self.i < len(self.t) else "end of filter"
        raise FilterError(f"expected an operator after {col!r}, found {got!r}")


def to_sql(text: str, columns: dict[str, str]) -> str:
    """Check a user filter against the grammar and the table's columns; return canonical SQL.

    ``columns`` maps column name -> "numeric" | "string" | "bool".
    """
    if not isinstance(text, str):
        raise FilterError(f"a filter is a string, not {type(text).__name__}")
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter is {len(text)} characters; the limit is {MAX_FILTER_CHARS}")
    if not text.strip():
        raise FilterError("filter is empty")
    parser = _Parser(_tokens(text), columns)
    sql = parser.expr(0)
    if parser.i != len(parser.t):
        raise FilterError(f"unexpected {parser.t[parser.i][1]!r} after the end of the filter")
    return sql
