"""Text on its way to the TTS: transforms, sentences, and what was heard.

Transforms only change what is *spoken*; the chat history and transcripts keep
the LLM's raw text. A transform is an async generator function from an async
iterable of text chunks to another, so user transforms compose with the
built-ins (``filter_markdown``, ``filter_emoji``, ``replace``).
"""

from __future__ import annotations

import re
from typing import AsyncIterable, AsyncIterator, Callable, Sequence

TextTransformFn = Callable[[AsyncIterable[str]], AsyncIterable[str]]


async def _by_words(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """Re-chunk a stream on whitespace so no word is split across chunks."""
    pending = ""
    async for chunk in chunks:
        pending += chunk
        cut = max(pending.rfind(" "), pending.rfind("\n"))
        if cut >= 0:
            yield pending[: cut + 1]
            pending = pending[cut + 1 :]
    if pending:
        yield pending


_WORD_ENDS_SENTENCE = re.compile(r"\w[.?]$")


async def _sentence_words(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """Like ``_by_words``, but a word that ends a sentence (``that.``, ``so?``)
    goes on at once instead of waiting for the whitespace the next chunk
    brings. Not ``!``, which may open an image (``![alt](url)``)."""
    pending = ""
    async for chunk in chunks:
        pending += chunk
        if _WORD_ENDS_SENTENCE.search(pending):
            yield pending
            pending = ""
            continue
        cut = max(pending.rfind(" "), pending.rfind("\n"))
        if cut >= 0:
            yield pending[: cut + 1]
            pending = pending[cut + 1 :]
    if pending:
        yield pending


# Markup that only means something at the start of a line.
_LINE_START_PATTERNS = [
    (re.compile(r"^\s{0,3}#{1,6}\s+", re.M), ""),  # headers
    (re.compile(r"^\s*[-*+]\s+", re.M), ""),  # bullets
    (re.compile(r"^\s*>\s?", re.M), ""),  # quotes
]
# Markup that comes in pairs inside a line.
_INLINE_PATTERNS = [
    (re.compile(r"!\[([^\]]*)\]\([^)]*\)"), r"\1"),  # images
    (re.compile(r"\[([^\]]+)\]\([^)]*\)"), r"\1"),  # links
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"\2"),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"\1"),  # italics
    (re.compile(r"`{1,3}"), ""),  # code marks
    (re.compile(r"~~(.+?)~~"), r"\1"),  # strikethrough
]
_MARKDOWN_PATTERNS = _LINE_START_PATTERNS + _INLINE_PATTERNS
_INLINE_MARK = re.compile(r"[*_`~\[\]]")
_OPEN_LINK = re.compile(r"\[[^\]]*$|\]\([^)]*$")
_LINE_PREFIX_ONLY = re.compile(r"[\s#>*+-]*")


def strip_markdown(text: str) -> str:
    for pattern, replacement in _MARKDOWN_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _strip_inline(text: str) -> str:
    if not _INLINE_MARK.search(text):
        return text  # most spoken text has no markup at all
    for pattern, replacement in _INLINE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _pairs_open(text: str) -> bool:
    """Whether ``text`` may end inside paired markup (bold, italics, code,
    strikethrough, a link), so that what follows could still change it."""
    if not _INLINE_MARK.search(text):
        return False
    if text.count("`") % 2 or text.count("~~") % 2 or text.count("__") % 2:
        return True
    if text.count("**") % 2 or text.replace("**", "").count("*") % 2:
        return True
    return _OPEN_LINK.search(text) is not None


async def filter_markdown(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    """Drop markdown syntax so the TTS does not read asterisks aloud.

    Streaming: whole words go on as soon as no markup is open around them (a
    line's first words once its prefix, ``# `` or ``- ``, is known), so the
    first sentence reaches the TTS while the LLM is still writing the second.
    Text inside unpaired markup waits for its closing mark, the end of the
    line or 200 characters, whichever comes first.
    """
    pending = ""  # the current line's text not yet passed on
    at_line_start = True

    def strip(text: str) -> str:
        return strip_markdown(text) if at_line_start else _strip_inline(text)

    async for chunk in _sentence_words(chunks):
        pending += chunk
        while "\n" in pending:
            line, _, pending = pending.partition("\n")
            yield strip(line + "\n")
            at_line_start = True
        if not pending:
            continue
        if at_line_start and _LINE_PREFIX_ONLY.fullmatch(pending):
            continue  # the line's prefix is not known yet ("#", "- ", indentation)
        if len(pending) > 200 or not _pairs_open(pending):
            yield strip(pending)
            pending = ""
            at_line_start = False
    if pending:
        yield strip(pending)


_EMOJI = re.compile(
    "["
    "\U0001f000-\U0001faff"  # pictographs, emoticons, transport, symbols, supplemental
    "\u2600-\u27bf"  # misc symbols and dingbats
    "\u2b00-\u2bff"  # arrows and stars
    "\ufe0f\u200d"  # variation selector, zero-width joiner
    "]+"
)


def strip_emoji(text: str) -> str:
    return _EMOJI.sub("", text)


async def filter_emoji(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        if stripped := strip_emoji(chunk):
            yield stripped


def replace(mapping: dict[str, str]) -> TextTransformFn:
    """A transform that replaces whole words (e.g. pronunciations)."""
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in mapping) + r")\b")

    async def transform(chunks: AsyncIterable[str]) -> AsyncIterator[str]:
        async for chunk in _by_words(chunks):
            yield pattern.sub(lambda m: mapping[m.group(1)], chunk)

    return transform


BUILTIN_TRANSFORMS: dict[str, TextTransformFn] = {
    "filter_markdown": filter_markdown,
    "filter_emoji": filter_emoji,
}


def resolve_transforms(transforms: Sequence[str | TextTransformFn] | None) -> list[TextTransformFn]:
    resolved: list[TextTransformFn] = []
    for transform in transforms or ():
        if isinstance(transform, str):
            if transform not in BUILTIN_TRANSFORMS:
                raise ValueError(
                    f"unknown text transform {transform!r}; built-ins: {sorted(BUILTIN_TRANSFORMS)}"
                )
            resolved.append(BUILTIN_TRANSFORMS[transform])
        elif callable(transform):
            resolved.append(transform)
        else:
            raise TypeError(f"a text transform must be a name or a callable, got {transform!r}")
    return resolved


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
# Text that ends a sentence for sure once the terminator is the last character:
# a question or exclamation mark, or a full stop after a lowercase word that is
# not a known abbreviation (not "3." which may go on as "3.5", not "Dr.", "e.g.").
_FINAL_TERMINATOR = re.compile(r"(?:[?!]|(?<![\w.])[a-z]+\.)$")
_ABBREVIATIONS = frozenset({"etc", "vs", "approx", "incl", "cf", "al", "ca", "esp", "fig", "no"})


class SentenceSplitter:
    """Cut streamed text into sentences for a TTS that synthesizes one at a time.

    Very short sentences ("Hi.") are joined to the next so the TTS gets
    phrases it can give a natural prosody to.

    A sentence is complete at a terminator followed by whitespace, or as soon
    as the text ends with a terminator that cannot be the middle of something
    else (``that.`` but not ``3.``, ``Dr.``, ``e.g.``, ``etc.``, nor inside an
    open quote or bracket): an LLM sends the space with the next token, and
    waiting for it would hold the first sentence back by one token.
    """

    def __init__(self, min_length: int = 12) -> None:
        self._min_length = min_length
        self._pending = ""

    def push(self, text: str) -> list[str]:
        self._pending += text
        sentences: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self._pending):
            candidate = self._pending[start : match.end()]
            if len(candidate.strip()) >= self._min_length:
                sentences.append(candidate.strip())
                start = match.end()
        self._pending = self._pending[start:]
        if self._ends_sentence(self._pending):
            sentences.append(self._pending.strip())
            self._pending = ""
        return sentences

    def _ends_sentence(self, text: str) -> bool:
        match = _FINAL_TERMINATOR.search(text)
        if match is None or len(text.strip()) < self._min_length:
            return False
        if match.group().rstrip(".") in _ABBREVIATIONS:
            return False
        # A quote or bracket still open closes after the terminator.
        if text.count('"') % 2 or text.count("(") > text.count(")") or text.count("[") > text.count("]"):
            return False
        return True

    def flush(self) -> list[str]:
        rest, self._pending = self._pending.strip(), ""
        return [rest] if rest else []


def heard_prefix(text: str, fraction: float) -> str:
    """The words of ``text`` heard when ``fraction`` of its audio has played.

    The pacing estimate used when the TTS gives no word timings: speech time is
    taken as proportional to characters, and a word counts as heard once the
    middle of its span has played (as the reference's transcript pacing does).
    Counting it only at its last character would drop the word the user was
    hearing when they cut in, and with it, for a short reply, everything.
    """
    if fraction >= 1.0:
        return text
    if fraction <= 0.0 or not text:
        return ""
    limit = fraction * len(text)
    heard_end = 0
    for match in re.finditer(r"\S+", text):
        if (match.start() + match.end()) / 2 <= limit:
            heard_end = match.end()
        else:
            break
    return text[:heard_end]
