"""Text on its way to the TTS, streamed: what each transform passes on, and when."""

import pytest

from voxtrio.text import SentenceSplitter, filter_markdown, heard_prefix, replace, resolve_transforms


async def stream(transform, chunks):
    async def source():
        for chunk in chunks:
            yield chunk

    return [piece async for piece in transform(source())]


# -- replace: whole words, never a word cut across chunks ----------------------------------


async def test_replace_sees_whole_words_whatever_the_chunks():
    sql = replace({"SQL": "sequel", "GUI": "gooey"})
    assert await stream(sql, ["S", "QL and G", "UI, not SQLite"]) == ["sequel and ", "gooey, not ", "SQLite"]
    # each chunk goes on up to its last space or newline, the rest waits for more
    assert await stream(sql, ["one two thr", "ee\nfour\nfi", "ve"]) == ["one two ", "three\nfour\n", "five"]
    assert await stream(sql, [" so", " it"]) == [" ", "so ", "it"]


# -- filter_markdown: markup split across chunks is still removed ---------------------------


@pytest.mark.parametrize(
    "chunks, spoken",
    [
        (["# Hello there\n", "Plain text."], ["Hello there\n", "Plain text."]),  # a header on the first line
        (["Say ~~no ", "more~~ now "], ["Say no more now "]),
        (["A `co", "de` word "], ["A ", "code word "]),  # "A " has no markup
        (["A __big ", "deal__ here "], ["A big deal here "]),
        (["So **very ", "bold** text "], ["So very bold text "]),
        (["So *very ", "slanted* text "], ["So very slanted text "]),
        (["See [the ", "docs](http://x.y) now "], ["See the docs now "]),
    ],
)
async def test_markup_open_at_the_end_of_a_chunk_waits_for_its_closing_mark(chunks, spoken):
    assert await stream(filter_markdown, chunks) == spoken


@pytest.mark.parametrize(
    "text",
    ["Use `ls` now ", "It is ~~not~~ fine ", "A __big__ deal ", "So **bold** here ", "So *slanted* here "],
)
async def test_closed_markup_goes_on_at_once(text):
    pieces = await stream(filter_markdown, [text, "and more "])
    assert len(pieces) == 2 and pieces[1] == "and more "


@pytest.mark.parametrize("opening", ["`", "`a"])  # pending lengths odd, then even
async def test_unclosed_markup_waits_200_characters_at_most(opening):
    chunks = [opening] + ["a "] * 120
    pieces = await stream(filter_markdown, chunks)
    # nothing passes on while the mark is open, until more than 200 characters wait
    assert len(pieces[0]) + 1 == (201 if len(opening) == 1 else 202)  # (+ the backtick)
    assert "".join(pieces) == "".join(chunks).replace("`", "")


async def test_each_complete_line_and_word_goes_on_before_the_next_chunk_is_read():
    log = []

    async def source():
        for chunk in ["one\ntwo\nthr", "ee"]:
            log.append(("in", chunk))
            yield chunk

    async for piece in filter_markdown(source()):
        log.append(("out", piece))
    assert log == [("in", "one\ntwo\nthr"), ("out", "one\n"), ("out", "two\n"), ("in", "ee"), ("out", "three")]
    # a space that starts a chunk after a finished sentence goes on too
    assert await stream(filter_markdown, ["Do that.", " so", " it"]) == ["Do that.", " ", "so ", "it"]


async def test_a_line_that_starts_inside_a_chunk_still_loses_its_header_mark():
    assert await stream(filter_markdown, ["Intro ", "text\n# Title\nBody "]) == ["Intro ", "text\n", "Title\n", "Body "]


# -- resolve_transforms ----------------------------------------------------------------------


def test_transforms_resolve_by_name_or_as_callables_in_order():
    def mine(chunks):
        return chunks

    assert resolve_transforms(None) == [] and resolve_transforms([]) == []
    assert resolve_transforms(["filter_markdown", mine]) == [filter_markdown, mine]
    with pytest.raises(ValueError, match=r"unknown text transform 'markdown'; built-ins: \['filter_emoji', 'filter_markdown'\]"):
        resolve_transforms(["markdown"])
    with pytest.raises(TypeError, match="a text transform must be a name or a callable, got 3"):
        resolve_transforms([3])


# -- SentenceSplitter ------------------------------------------------------------------------


def test_sentences_of_twelve_characters_stand_alone_shorter_ones_join_the_next():
    splitter = SentenceSplitter()
    assert splitter.push("Hello there. Hi. How are you doing? ") == ["Hello there.", "Hi. How are you doing?"]
    assert SentenceSplitter().push("Hello there.") == ["Hello there."]  # 12 characters, final
    assert SentenceSplitter().push("Hello you.") == []  # 10: it waits for more


def test_a_final_terminator_ends_a_sentence_unless_it_may_go_on():
    for waiting in [
        "We sell apples, pears, etc.",  # an abbreviation
        'He said "stop it now.',  # inside a quote
        "It works (mostly, I think.",  # inside brackets
        "It works [mostly, I think.",
        "The price went up by 3.",  # "3." may be "3.5"
    ]:
        assert SentenceSplitter().push(waiting) == [], waiting
    for final in ['He said "stop" and left.', "It works (mostly), I think.", "See [1] and [2], too.", "Is that really so?"]:
        assert SentenceSplitter().push(final) == [final], final


def test_flush_returns_what_is_left_and_starts_afresh():
    splitter = SentenceSplitter()
    assert splitter.flush() == []
    assert splitter.push("Right there, friend!") == ["Right there, friend!"]
    assert splitter.push("Bye now") == []
    assert splitter.flush() == ["Bye now"]
    assert splitter.push("See you. ") == [] and splitter.flush() == ["See you."]


def test_heard_prefix_of_all_the_audio_is_the_text_as_written():
    assert heard_prefix("Hi there. ", 1.0) == "Hi there. "
    assert heard_prefix("Hi there. ", 1.5) == "Hi there. "
