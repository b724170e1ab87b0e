"""A parser for the Lucene query syntax that ESGF clients put in `query`.

esgpull sends every constraint this way (`project:CMIP6 AND variable_id:(pr tas)`,
`NOT (variable_id:tas) AND project:CMIP6`, `variable_id:t*`), so the subset here follows the
classic Lucene query parser: field:term, bare terms, quoted phrases, `*`/`?` wildcards,
inclusive/exclusive ranges, AND/OR/NOT/&&/||/!, +/- prefixes, parentheses, boosts (ignored)
and backslash escapes. Clauses combine as Lucene's BooleanQuery does with default operator OR.
"""

from __future__ import annotations

from dataclasses import dataclass

from esgf_ha.index.errors import QuerySyntaxError

MAX_QUERY_LENGTH = 20_000
MAX_DEPTH = 50
# Each term is at least one pass over a core (a wildcard term one pass over every dictionary
# word), so the work of a query grows with its terms: bounded as Lucene bounds BooleanQuery
# clauses (its maxClauseCount is 1024), and wildcard terms, the costly ones, far lower.
MAX_TERMS = 1024
MAX_WILDCARD_TERMS = 16
MAX_PATTERN_LENGTH = 256
MAX_STARS = 16


@dataclass(frozen=True)
class MatchAll:
    pass


@dataclass(frozen=True)
class Term:
    field: str | None  # None: the catch-all `text` field
    value: str
    wildcard: bool = False
    phrase: bool = False


@dataclass(frozen=True)
class Range:
    field: str | None
    low: str | None  # None: open
    high: str | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True)
class Bool:
    must: tuple[Node, ...] = ()
    should: tuple[Node, ...] = ()
    must_not: tuple[Node, ...] = ()


Node = MatchAll | Term | Range | Bool

_SPECIAL = set('()[]{}":^~\\')


@dataclass
class _Tok:
    kind: str  # WORD PHRASE LPAREN RPAREN LBRACKET RBRACKET COLON AND OR NOT PLUS MINUS TO CARET
    text: str
    raw: str = ""
    escaped_wild: bool = False


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "(":
            toks.append(_Tok("LPAREN", c))
            i += 1
        elif c == ")":
            toks.append(_Tok("RPAREN", c))
            i += 1
        elif c in "[{":
            toks.append(_Tok("LBRACKET", c))
            i += 1
        elif c in "]}":
            toks.append(_Tok("RBRACKET", c))
            i += 1
        elif c == ":":
            toks.append(_Tok("COLON", c))
            i += 1
        elif c == "^" or c == "~":
            # boosts and fuzziness do not change which records match: skip the number
            i += 1
            while i < n and (text[i].isdigit() or text[i] == "."):
                i += 1
        elif c == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise QuerySyntaxError("unterminated quoted phrase in query")
            toks.append(_Tok("PHRASE", "".join(buf)))
            i = j + 1
        elif c == "&" and text.startswith("&&", i):
            toks.append(_Tok("AND", "&&"))
            i += 2
        elif c == "|" and text.startswith("||", i):
            toks.append(_Tok("OR", "||"))
            i += 2
        elif c in "+-!" and (not toks or toks[-1].kind != "WORD" or text[i - 1].isspace()):
            toks.append(_Tok({"+": "PLUS", "-": "MINUS", "!": "NOT"}[c], c))
            i += 1
        else:
            buf = []
            raw = []
            escaped_wild = False
            while i < n:
                ch = text[i]
                if ch == "\\" and i + 1 < n:
                    nxt = text[i + 1]
                    if nxt in "*?":
                        escaped_wild = True
                    buf.append(nxt)
                    raw.append(ch + nxt)
                    i += 2
                    continue
                if ch.isspace() or ch in _SPECIAL:
                    break
                buf.append(ch)
                raw.append(ch)
                i += 1
            if not buf:
                raise QuerySyntaxError(f"unexpected character {text[i]!r} in query")
            word = "".join(buf)
            if word in ("AND", "OR", "NOT", "TO"):
                toks.append(_Tok(word, word))
            else:
                toks.append(_Tok("WORD", word, "".join(raw), escaped_wild))
    return toks


class _Parser:
    def __init__(self, toks: list[_Tok]) -> None:
        self.toks = toks
        self.pos = 0

    def peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, kind: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError("query ends unexpectedly")
        if kind is not None and tok.kind != kind:
            raise QuerySyntaxError(f"expected {kind.lower()} but found {tok.text!r} in query")
        self.pos += 1
        return tok

    def parse_query(self, field: str | None, depth: int, closing: bool) -> Node:
        if depth > MAX_DEPTH:
            raise QuerySyntaxError("query nests parentheses too deeply")
        must: list[Node] = []
        should: list[Node] = []
        must_not: list[Node] = []
        # (occur, node) in order, so that a later AND can make the previous clause required
        clauses: list[list] = []
        conj: str | None = None
        while True:
            tok = self.peek()
            if tok is None or tok.kind == "RPAREN":
                if closing and tok is None:
                    raise QuerySyntaxError("missing closing parenthesis in query")
                if not closing and tok is not None:
                    raise QuerySyntaxError("unbalanced closing parenthesis in query")
                break
            if tok.kind in ("AND", "OR"):
                if not clauses:
                    raise QuerySyntaxError(f"query cannot start with {tok.text}")
                conj = tok.kind
                self.pos += 1
                continue
            modifier = None
            if tok.kind in ("NOT", "MINUS", "PLUS"):
                modifier = "PLUS" if tok.kind == "PLUS" else "NOT"
                self.pos += 1
            node = self.parse_clause(field, depth)
            if conj == "AND" and clauses and clauses[-1][0] != "must_not":
                clauses[-1][0] = "must"
            if modifier == "NOT":
                occur = "must_not"
            elif modifier == "PLUS" or conj == "AND":
                occur = "must"
            else:
                occur = "should"
            clauses.append([occur, node])
            conj = None
        if conj is not None:
            raise QuerySyntaxError("query ends with an operator")
        for occur, node in clauses:
            {"must": must, "should": should, "must_not": must_not}[occur].append(node)
        if not clauses:
            raise QuerySyntaxError("empty query clause")
        if len(clauses) == 1 and clauses[0][0] != "must_not":
            return clauses[0][1]
        if must:
            should = []  # optional clauses only affect scoring once something is required
        return Bool(tuple(must), tuple(should), tuple(must_not))

    def parse_clause(self, field: str | None, depth: int) -> Node:
        tok = self.peek()
        if tok is None:
            raise QuerySyntaxError("query ends after an operator")
        if tok.kind == "WORD" and self._next_is_colon():
            name = self.take().text
            self.take("COLON")
            if field is not None:
                raise QuerySyntaxError("a field cannot be named inside another field's group")
            return self.parse_value(name, depth)
        return self.parse_value(field, depth)

    def _next_is_colon(self) -> bool:
        return self.pos + 1 < len(self.toks) and self.toks[self.pos + 1].kind == "COLON"

    def parse_value(self, field: str | None, depth: int) -> Node:
        tok = self.take()
        if tok.kind == "LPAREN":
            node = self.parse_query(field, depth + 1, closing=True)
            self.take("RPAREN")
            return node
        if tok.kind == "PHRASE":
            return Term(field, tok.text, phrase=True)
        if tok.kind == "LBRACKET":
            low = self._range_bound()
            self.take("TO")
            high = self._range_bound()
            end = self.take("RBRACKET")
            return Range(field, low, high, tok.text == "[", end.text == "]")
        if tok.kind == "WORD":
            if tok.text == "*" and field is None and self.peek() is None:
                return MatchAll()
            wild = ("*" in tok.text or "?" in tok.text) and not tok.escaped_wild
            if field is not None and tok.text == "*":
                return Range(field, None, None)
            return Term(field, tok.text, wildcard=wild)
        if tok.kind == "TO":
            return Term(field, "TO")
        raise QuerySyntaxError(f"unexpected {tok.text!r} in query")

    def _range_bound(self) -> str | None:
        tok = self.take()
        if tok.kind == "PHRASE":
            return tok.text
        if tok.kind != "WORD":
            raise QuerySyntaxError(f"unexpected {tok.text!r} in a range")
        return None if tok.text == "*" else tok.text


def parse(text: str) -> Node:
    """Parse a Lucene query string; raises QuerySyntaxError with a message for bad input."""
    if len(text) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    stripped = text.strip()
    if stripped in ("", "*", "*:*"):
        return MatchAll()
    toks = _tokenize(stripped)
    # `*:*` inside a larger query
    parser = _Parser(toks)
    node = _simplify(parser.parse_query(None, 0, closing=False))
    _check_bounds(node)
    return node


def _terms(node: Node) -> list[Term | Range]:
    if isinstance(node, Bool):
        return [t for child in (*node.must, *node.should, *node.must_not) for t in _terms(child)]
    return [node] if isinstance(node, Term | Range) else []


def _check_bounds(node: Node) -> None:
    """Refuse queries whose work would be unbounded: too many terms or wildcard patterns."""
    terms = _terms(node)
    if len(terms) > MAX_TERMS:
        raise QuerySyntaxError(f"query has {len(terms)} terms; at most {MAX_TERMS} are accepted")
    patterns = [t.value for t in terms if isinstance(t, Term) and t.wildcard]
    if len(patterns) > MAX_WILDCARD_TERMS:
        raise QuerySyntaxError(
            f"query has {len(patterns)} wildcard terms; at most {MAX_WILDCARD_TERMS} are accepted"
        )
    for pattern in patterns:
        if len(pattern) > MAX_PATTERN_LENGTH:
            raise QuerySyntaxError(
                f"wildcard pattern {pattern[:40]!r}… is longer than {MAX_PATTERN_LENGTH} characters"
            )
        if pattern.count("*") > MAX_STARS:
            raise QuerySyntaxError(
                f"wildcard pattern {pattern[:40]!r} has more than {MAX_STARS} '*'"
            )


def _simplify(node: Node) -> Node:
    if isinstance(node, Term) and node.field == "*" and node.value == "*":
        return MatchAll()
    if isinstance(node, Range) and node.field == "*":
        return MatchAll()
    if isinstance(node, Bool):
        return Bool(
            tuple(_simplify(n) for n in node.must),
            tuple(_simplify(n) for n in node.should),
            tuple(_simplify(n) for n in node.must_not),
        )
    return node
