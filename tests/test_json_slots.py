"""The JSON value constraints of slot filling (no model needed)."""

import pytest

from voxtrio.providers.smollm_engine import json_slots as js


def feed_all(slot, pieces):
    return [slot.feed(p) for p in pieces]


def test_string_closes_on_quote_and_drops_tail():
    s = js.StringSlot()
    assert feed_all(s, [b"Par", b"is", b'",']) == [True, True, True]
    assert s.done and s.value() == "Paris"


def test_string_rejects_escapes_controls_leading_space_and_empty():
    s = js.StringSlot()
    assert not s.feed(b" Paris")
    assert not s.feed(b'"')          # empty value (minLength 1)
    assert not s.feed(b"a\\b")
    assert not s.feed(b"a\nb")
    assert s.feed(b"Rome") and not s.done


def test_string_utf8_may_split_across_tokens_but_must_complete():
    s = js.StringSlot()
    assert feed_all(s, [b"Z", b"\xc3", b'"']) == [True, True, False]
    assert feed_all(s, [b"\xbcrich", b'"']) == [True, True]
    assert s.value() == "Zürich"


def test_string_max_length():
    s = js.StringSlot(max_chars=3)
    assert s.feed(b"abc") and not s.feed(b"d") and s.feed(b'"')


def test_copy_from_whole_words_case_insensitive_spelled_as_source():
    s = js.StringSlot(copy_from="weather in San Francisco please")
    assert not s.feed(b"Sanfr")
    assert feed_all(s, [b"SAN", b" fr"]) == [True, True]
    assert not s.feed(b'"')          # "SAN fr" does not end on a word boundary
    assert feed_all(s, [b"ancisco", b'"']) == [True, True]
    assert s.value() == "San Francisco"


def test_copy_from_force_close_trims_to_a_word():
    s = js.StringSlot(copy_from="weather in San Francisco")
    assert feed_all(s, [b"San", b" Fr"]) == [True, True]
    s.force_close()
    assert s.value() == "San"


def test_number_and_integer():
    n = js.NumberSlot(integer=True)
    assert feed_all(n, [b"2", b"0", b" minutes"]) == [True, True, True]
    assert n.done and n.value() == 20
    n = js.NumberSlot(integer=True)
    assert n.feed(b"0") and not n.feed(b"5")  # no leading zeros
    n = js.NumberSlot(integer=False)
    assert feed_all(n, [b"-", b"3", b".", b"5", b"}"]) == [True, True, True, True, True]
    assert n.value() == -3.5
    n = js.NumberSlot(integer=True)
    assert not n.feed(b"1.5") and not n.feed(b"abc") and not n.feed(b",")


def test_word_spans_and_schema_checks():
    assert "Buenos Aires" in js.word_spans("weather in Buenos Aires today")
    with pytest.raises(js.SchemaError, match="unsupported type"):
        list(js.properties({"type": "object", "properties": {"x": {"type": "array"}}}))
