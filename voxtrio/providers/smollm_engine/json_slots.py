"""Character-level constraints for filling JSON values one token at a time.

The engine forces the JSON syntax around each value (`{"location": "`) and asks a
slot whether the model's next token may extend the value. A slot sees raw token
bytes, accepts or rejects them without side effects on rejection, and knows when
the value is complete. Only flat objects with string, number, integer, boolean and
enum properties are supported: that is what a rule-routed tool call needs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping

_SCALARS = {"string", "number", "integer", "boolean"}
_TERMINATORS = ',} \n\r\t"'  # end a number; the quote covers a string-typed answer


class Cancelled(Exception):
    """The caller's cancel flag was set while a value was being generated."""


class SchemaError(ValueError):
    pass


def properties(schema: Mapping) -> Iterator[tuple[str, Mapping]]:
    if schema.get("type", "object") != "object" or "properties" not in schema:
        raise SchemaError("the schema must be an object with 'properties'")
    for name, prop in schema["properties"].items():
        if "enum" in prop:
            if not prop["enum"]:
                raise SchemaError(f"{name}: empty enum")
        elif prop.get("type") not in _SCALARS:
            raise SchemaError(f"{name}: unsupported type {prop.get('type')!r} (flat scalars and enums only)")
        yield name, prop


class Slot:
    max_tokens: int
    done: bool

    def feed(self, data: bytes) -> bool: ...
    def force_close(self) -> None: ...
    def value(self) -> object: ...


def slot_for(prop: Mapping, *, copy_from: str | None = None) -> Slot:
    kind = prop["type"]
    if kind == "string":
        return StringSlot(min_chars=int(prop.get("minLength", 1)), max_chars=int(prop.get("maxLength", 64)),
                          copy_from=copy_from)
    if kind in ("number", "integer"):
        return NumberSlot(integer=kind == "integer")
    raise SchemaError(f"no generated slot for type {kind!r}")


class StringSlot(Slot):
    """The inside of a JSON string, after the opening quote, up to the closing quote.

    No escapes or control characters (a spoken-language argument never needs them),
    no leading whitespace, at least min_chars characters, valid UTF-8 (a token may
    end inside a character; the next one must complete it). A token that closes the
    string may carry more text after the quote (like `",`): that tail is dropped.

    With copy_from, the value must be a run of whole words of that text, compared
    case-insensitively for ASCII letters, and is returned as spelled there: a tiny
    model then cannot misspell or invent a name that the user said, at the price of
    never normalising it ("NYC" stays "NYC")."""

    def __init__(self, *, min_chars: int = 1, max_chars: int = 64, copy_from: str | None = None):
        self._buf = b""
        self._min = min_chars
        self._max = max_chars
        self._source = copy_from.encode() if copy_from is not None else None
        self._span: tuple[int, int] | None = None
        self.max_tokens = max_chars + 1
        self.done = False

    def feed(self, data: bytes) -> bool:
        quote = data.find(b'"')
        body = data if quote < 0 else data[:quote]
        closes = quote >= 0
        if any(b < 0x20 or b == 0x5C for b in body):  # control characters, backslash
            return False
        new = self._buf + body
        if new[:1].isspace():
            return False
        n_chars = _utf8_chars(new, complete=closes)
        if n_chars is None or n_chars > self._max or (closes and n_chars < self._min):
            return False
        span = None
        if self._source is not None:
            span = _word_span(self._source, new, closed=closes)
            if span is None:
                return False
        self._buf, self._span, self.done = new, span, closes
        return True

    def accepts_value(self, text: str) -> bool:
        """Whether text, as a whole value, satisfies this slot's limits."""
        probe = StringSlot(min_chars=self._min, max_chars=self._max,
                           copy_from=self._source.decode() if self._source is not None else None)
        return probe.feed(text.encode() + b'"')

    def force_close(self) -> None:
        """End the value where it stands (out of tokens): drop an unfinished character
        and, when copying, an unfinished word."""
        if self._source is not None:
            buf = self._buf
            while buf and _word_span(self._source, buf, closed=True) is None:
                buf = buf[:-1]
            self._buf, self._span = buf, _word_span(self._source, buf, closed=True) if buf else None
        self.done = True

    def value(self) -> str:
        if self._span is not None:
            return self._source[self._span[0]:self._span[1]].decode("utf-8", errors="ignore")
        return self._buf.decode("utf-8", errors="ignore").rstrip()


def word_spans(text: str, max_words: int = 4) -> list[str]:
    """Every run of up to max_words consecutive words of text, as spelled there."""
    words = list(re.finditer(r"\w+(?:['’]\w+)*", text))
    spans = {text[words[i].start():words[j - 1].end()]
             for i in range(len(words)) for j in range(i + 1, min(len(words), i + max_words) + 1)}
    return sorted(spans)


def _utf8_chars(data: bytes, *, complete: bool) -> int | None:
    """Number of characters in data, or None if it is not UTF-8 (an unfinished last
    character is allowed unless complete is set)."""
    try:
        return len(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        if not complete and e.reason == "unexpected end of data" and len(data) - e.start < 4:
            return len(data[:e.start].decode("utf-8"))
        return None


def _word_span(source: bytes, text: bytes, *, closed: bool) -> tuple[int, int] | None:
    """Where text occurs in source starting at a word start (and, if closed, ending at
    a word end), ignoring ASCII case; None if nowhere."""
    src, text = source.lower(), text.lower()
    start = src.find(text)
    while start >= 0:
        end = start + len(text)
        starts_word = start == 0 or not _is_word_byte(src[start - 1])
        ends_word = end == len(src) or not _is_word_byte(src[end])
        if starts_word and (ends_word or not closed):
            return start, end
        start = src.find(text, start + 1)
    return None


def _is_word_byte(b: int) -> bool:
    return chr(b).isalnum() or b >= 0x80  # any byte of a non-ASCII character counts as a letter


class NumberSlot(Slot):
    """A JSON number without exponent: -?(0|[1-9][0-9]*)(.[0-9]+)?; integers have no fraction.

    The value ends when the model writes a delimiter (`,` `}` or whitespace) after a
    complete number; the delimiter itself belongs to the forced syntax and is dropped."""

    _MAX_CHARS = 16

    def __init__(self, *, integer: bool):
        self._text = ""
        self._integer = integer
        self.max_tokens = self._MAX_CHARS + 1
        self.done = False

    def feed(self, data: bytes) -> bool:
        text = self._text
        for ch in data.decode("utf-8", errors="replace"):
            if ch in _TERMINATORS:
                if not self._complete(text):
                    return False
                self._text, self.done = text, True
                return True
            if not self._prefix_ok(text + ch):
                return False
            text += ch
        self._text = text
        return True

    def _prefix_ok(self, s: str) -> bool:
        if len(s) > self._MAX_CHARS:
            return False
        body = s[1:] if s.startswith("-") else s
        if body == "":
            return s == "-"
        whole, dot, frac = body.partition(".")
        if not whole.isdigit() or (len(whole) > 1 and whole[0] == "0"):
            return False
        if dot and self._integer:
            return False
        return frac == "" or frac.isdigit()

    def _complete(self, s: str) -> bool:
        return self._prefix_ok(s) and s not in ("", "-") and not s.endswith(".")

    def force_close(self) -> None:
        if not self._complete(self._text):
            self._text = self._text.rstrip(".") if self._complete(self._text.rstrip(".")) else "0"
        self.done = True

    def value(self) -> int | float:
        return int(self._text) if self._integer else json.loads(self._text)
