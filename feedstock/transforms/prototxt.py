"""A tiny protobuf text-format reader: enough for ``transform_param { ... }`` blocks in prototxt files.

Handles ``name: value`` (numbers, true/false, enum identifiers, quoted strings
with escapes, adjacent strings joined), ``name { ... }`` / ``name: { ... }``
nested messages, ``name: [a, b]`` lists, optional ``,``/``;`` separators and
``#`` comments. Every field maps to the list of its values, in order, so
repeated fields (``mean_value: 104`` lines) accumulate.
"""
from __future__ import annotations

import ast
import re
from typing import Dict, List, Tuple, Union

Scalar = Union[bool, int, float, str]
Value = Union[Scalar, "Message"]
Message = Dict[str, List[Value]]  # a field's values in order (repeated fields have several)

_TOKEN = re.compile(
    r"""\s+|\#[^\n]*
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<punct>[{}\[\]:,;<>])
    |(?P<word>[A-Za-z0-9_.+\-]+)""",
    re.VERBOSE,
)
_INT = re.compile(r"[-+]?(0[xX][0-9a-fA-F]+|\d+)$")
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?[fF]?$")
_BOOLS = {"true": True, "True": True, "t": True, "false": False, "False": False, "f": False}
_SPECIAL_FLOATS = {"inf": float("inf"), "-inf": float("-inf"), "infinity": float("inf"),
                   "-infinity": float("-inf"), "nan": float("nan")}


def tokenize(text: str) -> List[Tuple[str, str, int]]:
    """(kind, text, line) tokens; kind is 'str', 'punct' or 'word'."""
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"prototxt line {line}: unexpected character {text[pos]!r}")
        if m.lastgroup:
            tokens.append((m.lastgroup, m.group(m.lastgroup), text.count("\n", 0, pos) + 1))
        pos = m.end()
    return tokens


def scalar(kind: str, token: str) -> Scalar:
    """A token's Python value: str for quoted strings, bool, int, float, or the identifier text."""
    if kind == "str":
        return ast.literal_eval(token)  # protobuf C-style escapes are a subset of Python's
    if token in _BOOLS:
        return _BOOLS[token]
    if _INT.match(token):
        return _integer(token)
    if _FLOAT.match(token):
        return float(token.rstrip("fF"))
    if token.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[token.lower()]
    return token


def _integer(token: str) -> int:
    """Decimal, 0x hex or leading-zero octal, as protobuf's text format reads integers."""
    sign = -1 if token.startswith("-") else 1
    body = token.lstrip("+-")
    base = 16 if body.lower().startswith("0x") else 8 if len(body) > 1 and body[0] == "0" else 10
    try:
        return sign * int(body, base)
    except ValueError:
        raise ValueError(f"prototxt: bad integer {token!r}") from None


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", "", -1)

    def take(self, expected: str = "") -> Tuple[str, str, int]:
        tok = self.peek()
        if tok[0] == "eof" or (expected and tok[1] != expected):
            where = "end of text" if tok[0] == "eof" else f"line {tok[2]}: {tok[1]!r}"
            raise ValueError(f"prototxt: expected {expected or 'a token'} at {where}")
        self.i += 1
        return tok

    def message(self, closing: str) -> Message:
        msg: Message = {}
        while True:
            kind, text, _ = self.peek()
            if kind == "eof" and closing:
                raise ValueError(f"prototxt: missing {closing!r} at end of text")
            if kind == "eof" or (kind == "punct" and text == closing):
                return msg
            kind, name, line = self.take()
            if kind != "word":
                raise ValueError(f"prototxt line {line}: expected a field name, got {name!r}")
            msg.setdefault(name, []).extend(self.field_values())
            if self.peek()[1] in (",", ";"):
                self.take()
        return msg

    def field_values(self) -> List[Value]:
        if self.peek()[1] == ":":
            self.take(":")
            if self.peek()[1] == "[":
                return self.list_values()
        return [self.value()]

    def list_values(self) -> List[Value]:
        self.take("[")
        values: List[Value] = []
        while self.peek()[1] != "]":
            values.append(self.value())
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return values

    def value(self) -> Value:
        if self.peek()[1] in ("{", "<"):
            close = "}" if self.take()[1] == "{" else ">"
            body = self.message(close)
            self.take(close)
            return body
        kind, token, line = self.take()
        if kind == "punct":
            raise ValueError(f"prototxt line {line}: expected a value, got {token!r}")
        value = scalar(kind, token)
        while kind == "str" and self.peek()[0] == "str":  # adjacent strings concatenate
            value = f"{value}{scalar(*self.take()[:2])}"  # both str (quoted tokens)
        return value


def parse_prototxt(text: str) -> Message:
    """Parse text-format protobuf into ``{field: [values...]}``; nested messages are dicts."""
    if not isinstance(text, str):
        raise ValueError(f"prototxt text must be a str, got {type(text).__name__}")
    return _Parser(text).message("")


def find_blocks(msg: Message, name: str) -> List[Message]:
    """Every nested message called ``name``, depth first."""
    found: List[Message] = []
    for key, values in msg.items():
        for v in values:
            if isinstance(v, dict):
                if key == name:
                    found.append(v)
                else:
                    found.extend(find_blocks(v, name))
    return found
