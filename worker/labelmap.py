"""Label maps in the TensorFlow Object Detection API's ``label_map.pbtxt`` format.

The file is a ``StringIntLabelMap`` in protobuf text format::

    # comments run to the end of the line
    item {
      id: 1
      name: 'thumbs_up'
      display_name: "Thumbs up"
    }

A small hand-written parser reads it, so the worker needs neither protobuf's text
format nor the Object Detection API package. It accepts what ``text_format`` accepts
for this message (either quote style, ``item {`` or ``item: {``, ``<…>`` blocks,
optional ``,``/``;`` separators, fields in any order) and rejects with a
``LabelMapError`` naming the file and line anything the detector could misread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# Fields of StringIntLabelMapItem that the detector does not use but that exported
# label maps may carry (object_detection/protos/string_int_label_map.proto). They are
# skipped; any other name is most likely a typo and is an error.
_IGNORED_ITEM_FIELDS: Final = frozenset(
    {"keypoints", "ancestor_ids", "descendant_ids", "frequency", "instance_count"}
)

_TOKEN: Final = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
    | (?P<newline>\n)
    | (?P<comment>\#[^\n]*)
    | (?P<string>'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")
    | (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)[fF]?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    | (?P<punct>[{}<>:,;\[\]])
    """,
    re.VERBOSE,
)
_ESCAPES: Final = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}
_CLOSING: Final = {"{": "}", "<": ">"}


class LabelMapError(ValueError):
    """A label map that cannot be read or is inconsistent; the message names the file
    and, where there is one, the line."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    line: int


class LabelMap(Mapping[int, str]):
    """Class id (1-based, as the model emits it) → label name. Ids and names are unique."""

    __slots__ = ("_by_id", "_by_name", "_display")

    def __init__(self, names: Mapping[int, str], display_names: Mapping[int, str] = {}) -> None:
        if not names:
            raise ValueError("a label map needs at least one label")
        by_name: dict[str, int] = {}
        for class_id, name in names.items():
            if class_id < 1:
                raise ValueError(f"class id {class_id} for {name!r} must be >= 1")
            if not name:
                raise ValueError(f"class id {class_id} has an empty name")
            if name in by_name:
                raise ValueError(f"name {name!r} is used by ids {by_name[name]} and {class_id}")
            by_name[name] = class_id
        self._by_id = dict(sorted(names.items()))
        self._by_name = by_name
        self._display = {i: display_names.get(i, n) for i, n in self._by_id.items()}

    def __getitem__(self, class_id: int) -> str:
        return self._by_id[class_id]

    def __iter__(self) -> Iterator[int]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __repr__(self) -> str:
        return f"LabelMap({self._by_id!r})"

    @property
    def names(self) -> tuple[str, ...]:
        """Label names in class id order."""
        return tuple(self._by_id.values())

    def id_of(self, name: str) -> int:
        """The class id of ``name``; ``KeyError`` if there is no such label."""
        return self._by_name[name]

    def display_name(self, class_id: int) -> str:
        """The human-readable name (``display_name``, else ``name``) of ``class_id``."""
        return self._display[class_id]


def load_label_map(path: Path) -> LabelMap:
    """Read and validate a ``label_map.pbtxt``."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelMapError(f"{path}: cannot read label map: {exc}") from exc
    return parse_label_map(text, source=str(path))


def parse_label_map(text: str, *, source: str = "<label map>") -> LabelMap:
    """Parse label map text; ``source`` names the file in error messages."""
    return _Parser(text, source).parse()


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self._source = source
        self._tokens = list(self._tokenize(text))
        self._pos = 0

    def _error(self, line: int | None, message: str) -> LabelMapError:
        where = self._source if line is None else f"{self._source}:{line}"
        return LabelMapError(f"{where}: {message}")

    def _tokenize(self, text: str) -> Iterator[_Token]:
        line, pos = 1, 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                if text[pos] in "'\"":
                    raise self._error(line, "unterminated string")
                raise self._error(line, f"unexpected character {text[pos]!r}")
            kind = match.lastgroup
            assert kind is not None
            if kind == "newline":
                line += 1
            elif kind not in ("space", "comment"):
                yield _Token(kind, match.group(), line)
            pos = match.end()

    def _peek(self) -> _Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _next(self, expected: str) -> _Token:
        token = self._peek()
        if token is None:
            last = self._tokens[-1].line if self._tokens else None
            raise self._error(last, f"unexpected end of file, expected {expected}")
        self._pos += 1
        return token

    def _skip_separator(self) -> None:
        token = self._peek()
        if token is not None and token.text in (",", ";"):
            self._pos += 1

    def parse(self) -> LabelMap:
        names: dict[int, str] = {}
        display: dict[int, str] = {}
        id_lines: dict[int, int] = {}
        name_lines: dict[str, int] = {}
        while self._peek() is not None:
            field = self._next("a field name")
            if field.kind != "ident":
                raise self._error(field.line, f"expected a field name, got {field.text!r}")
            if field.text != "item":
                raise self._error(field.line, f"unknown field {field.text!r} (expected 'item')")
            class_id, name, display_name = self._item(field)
            if class_id in id_lines:
                raise self._error(
                    field.line, f"duplicate id {class_id} (first used on line {id_lines[class_id]})"
                )
            if name in name_lines:
                raise self._error(
                    field.line, f"duplicate name {name!r} (first used on line {name_lines[name]})"
                )
            id_lines[class_id], name_lines[name] = field.line, field.line
            names[class_id] = name
            if display_name is not None:
                display[class_id] = display_name
            self._skip_separator()
        if not names:
            raise self._error(None, "label map has no items")
        return LabelMap(names, display)

    def _item(self, start: _Token) -> tuple[int, str, str | None]:
        closing = self._open_block()
        values: dict[str, tuple[_Token, int | str]] = {}
        while True:
            token = self._next(f"{closing!r} closing the item opened on line {start.line}")
            if token.text == closing:
                break
            if token.kind != "ident":
                raise self._error(token.line, f"expected a field name, got {token.text!r}")
            if token.text in _IGNORED_ITEM_FIELDS:
                self._skip_value()
            elif token.text in ("id", "name", "display_name"):
                if token.text in values:
                    raise self._error(token.line, f"field {token.text!r} given twice in one item")
                values[token.text] = (token, self._scalar(token.text))
            else:
                raise self._error(token.line, f"unknown item field {token.text!r}")
            self._skip_separator()
        for required in ("id", "name"):
            if required not in values:
                raise self._error(start.line, f"item has no {required!r}")
        id_token, class_id = values["id"]
        name_token, name = values["name"]
        if not isinstance(class_id, int):
            raise self._error(id_token.line, f"id must be an integer, got {class_id!r}")
        if class_id < 1:
            # 0 is the background class in the Object Detection API; models never emit it.
            raise self._error(id_token.line, f"id must be >= 1, got {class_id}")
        if not isinstance(name, str) or not name:
            raise self._error(name_token.line, "name must be a non-empty string")
        display_name = values.get("display_name", (None, None))[1]
        if display_name is not None and not isinstance(display_name, str):
            raise self._error(values["display_name"][0].line, "display_name must be a string")
        return class_id, name, display_name

    def _open_block(self) -> str:
        token = self._next("'{'")
        if token.text == ":":
            token = self._next("'{'")
        if token.text not in _CLOSING:
            raise self._error(token.line, f"expected '{{' after 'item', got {token.text!r}")
        return _CLOSING[token.text]

    def _scalar(self, field: str) -> int | str:
        colon = self._next("':'")
        if colon.text != ":":
            raise self._error(colon.line, f"expected ':' after {field!r}, got {colon.text!r}")
        token = self._next(f"a value for {field!r}")
        if token.kind == "string":
            return self._unquote(token)
        if token.kind == "number":
            if re.fullmatch(r"[-+]?\d+", token.text):
                return int(token.text)
            raise self._error(token.line, f"{field!r} must be an integer, got {token.text}")
        raise self._error(token.line, f"expected a value for {field!r}, got {token.text!r}")

    def _skip_value(self) -> None:
        token = self._next("a value")
        if token.text == ":":
            token = self._next("a value")
        if token.text == "[":
            while (token := self._next("']'")).text != "]":
                pass
            return
        if token.text in _CLOSING:
            closing, depth = _CLOSING[token.text], 1
            while depth:
                inner = self._next(f"{closing!r}")
                if inner.text == token.text:
                    depth += 1
                elif inner.text == closing:
                    depth -= 1
            return
        if token.kind not in ("string", "number", "ident"):
            raise self._error(token.line, f"expected a value, got {token.text!r}")

    def _unquote(self, token: _Token) -> str:
        body, out, i = token.text[1:-1], [], 0
        while i < len(body):
            char = body[i]
            if char == "\\":
                escaped = body[i + 1]
                if escaped not in _ESCAPES:
                    raise self._error(token.line, f"unsupported escape '\\{escaped}' in string")
                out.append(_ESCAPES[escaped])
                i += 2
            else:
                out.append(char)
                i += 1
        return "".join(out)
