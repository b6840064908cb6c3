"""Arguments checked against a raw JSON schema (``FunctionTool.raw``: the path of
MCP tools and scenario tools), one row per rule: what passes, and the error
that names the field when it does not."""

import pytest

import voxtrio

ADDRESS = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "zip": {"type": "integer"}},
    "required": ["city"],
}

SCHEMA = {
    "properties": {
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "level": {"enum": [1, 2, 3]},  # an enum without a type
        "address": ADDRESS,
        "strict": {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False},
        "loose": {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": True},
        "anything": {"type": "object"},  # no properties: any keys
        "tags": {"type": "array", "items": {"type": "string"}},
        "grid": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        "stops": {"type": "array", "items": ADDRESS},
        "count": {"type": "integer"},
        "ratio": {"type": "number"},
        "flag": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
        "when": {"type": "string", "format": "date-time"},
        "ids": {"type": ["array", "string"], "items": {"type": "integer"}},  # items apply to arrays only
        "mail": {"type": "string", "format": "email"},
    },
    "required": ["unit"],
}


def tool():
    return voxtrio.FunctionTool.raw(name="t", description="", parameters=SCHEMA, function=lambda **kw: kw)


ACCEPTED = [
    {"unit": "celsius"},
    {"unit": "fahrenheit", "level": 2},
    {"unit": "celsius", "address": {"city": "Paris"}},
    {"unit": "celsius", "address": {"city": "Paris", "zip": 75001}},
    {"unit": "celsius", "strict": {"a": 1}},
    {"unit": "celsius", "loose": {"a": 1, "b": "extra is allowed here"}},
    {"unit": "celsius", "anything": {"x": [1, {"y": None}]}},
    {"unit": "celsius", "tags": []},
    {"unit": "celsius", "tags": ["a", "b"]},
    {"unit": "celsius", "grid": [[1, 2.5], []]},
    {"unit": "celsius", "stops": [{"city": "Lyon"}, {"city": "Nice", "zip": 6000}]},
    {"unit": "celsius", "count": 3, "ratio": 3},  # an integer is a number
    {"unit": "celsius", "ratio": 0.5, "flag": False},
    {"unit": "celsius", "note": None},
    {"unit": "celsius", "note": "ok"},
    # A format is an annotation (JSON Schema's default): it is not checked.
    {"unit": "celsius", "when": "tomorrow", "mail": "not an address"},
    {"unit": "celsius", "ids": "all"},
    {"unit": "celsius", "ids": [1, 2]},
]

REJECTED = [
    # enums
    ({"unit": "kelvin"}, "field 'unit': 'kelvin' is not one of ['celsius', 'fahrenheit']"),
    ({"unit": "celsius", "level": 4}, "field 'level': 4 is not one of [1, 2, 3]"),
    ({"unit": "celsius", "level": "2"}, "field 'level': '2' is not one of [1, 2, 3]"),
    # required, top level and nested
    ({}, "field 'unit': missing required argument"),
    ({"unit": "celsius", "address": {"zip": 1}}, "field 'address.city': missing required argument"),
    # nested objects: types and extra properties
    ({"unit": "celsius", "address": "Paris"}, "field 'address': expected object, got string"),
    ({"unit": "celsius", "address": {"city": 7}}, "field 'address.city': expected string, got integer"),
    ({"unit": "celsius", "address": {"city": "P", "country": "FR"}}, "field 'address.country': unexpected argument"),
    ({"unit": "celsius", "strict": {"a": 1, "b": 2}}, "field 'strict.b': unexpected argument"),
    ({"unit": "celsius", "strict": {"a": "1"}}, "field 'strict.a': expected integer, got string"),
    # extra properties at the top
    ({"unit": "celsius", "colour": "red"}, "field 'colour': unexpected argument"),
    # array items
    ({"unit": "celsius", "tags": "a"}, "field 'tags': expected array, got string"),
    ({"unit": "celsius", "tags": ["a", 2]}, "field 'tags[1]': expected string, got integer"),
    ({"unit": "celsius", "grid": [[1], [2, "x"]]}, "field 'grid[1][1]': expected number, got string"),
    ({"unit": "celsius", "grid": [1]}, "field 'grid[0]': expected array, got integer"),
    ({"unit": "celsius", "stops": [{"city": "Lyon"}, {"zip": 1}]}, "field 'stops[1].city': missing required argument"),
    ({"unit": "celsius", "stops": [{"city": "Lyon", "x": 1}]}, "field 'stops[0].x': unexpected argument"),
    # scalar types
    ({"unit": "celsius", "count": 1.5}, "field 'count': expected integer, got number"),
    ({"unit": "celsius", "count": True}, "field 'count': expected integer, got boolean"),
    ({"unit": "celsius", "flag": 1}, "field 'flag': expected boolean, got integer"),
    ({"unit": "celsius", "ratio": None}, "field 'ratio': expected number, got null"),
    ({"unit": "celsius", "note": 3}, "field 'note': expected string or null, got integer"),
    ({"unit": "celsius", "ids": [1, "2"]}, "field 'ids[1]': expected integer, got string"),
]


@pytest.mark.parametrize("arguments", ACCEPTED, ids=[str(sorted(a)) for a in ACCEPTED])
def test_arguments_that_keep_the_schema_are_passed_on_unchanged(arguments):
    import json

    assert tool().parse_arguments(json.dumps(arguments)) == arguments


@pytest.mark.parametrize("arguments, message", REJECTED, ids=[m for _, m in REJECTED])
def test_arguments_that_break_the_schema_get_an_error_naming_the_field(arguments, message):
    import json

    with pytest.raises(voxtrio.ToolArgumentsError) as error:
        tool().parse_arguments(json.dumps(arguments))
    assert str(error.value) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("{nope", "arguments are not valid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", "arguments must be a JSON object, got list"),
        ('"celsius"', "arguments must be a JSON object, got str"),
    ],
)
def test_arguments_that_are_not_a_json_object_are_refused(text, message):
    with pytest.raises(voxtrio.ToolArgumentsError) as error:
        tool().parse_arguments(text)
    assert str(error.value) == message


def test_no_arguments_at_all_mean_an_empty_object():
    free = voxtrio.FunctionTool.raw(name="f", description="", parameters={}, function=lambda: None)
    assert free.parse_arguments("") == {} and free.parse_arguments("  ") == {}
    assert free.parameters == {"type": "object", "properties": {}}
    # with no properties declared, any argument is let through
    assert free.parse_arguments('{"x": 1}') == {"x": 1}
    with pytest.raises(voxtrio.ToolArgumentsError, match="field 'unit': missing required argument"):
        tool().parse_arguments("")


async def test_a_raw_tool_is_described_as_given_and_called_with_keywords():
    seen = []

    def lookup(city, ctx):
        seen.append((city, ctx))
        return f"sunny in {city}"

    raw = voxtrio.FunctionTool.raw(
        name="lookup", description="Look it up.", parameters=ADDRESS, function=lookup, context_parameter="ctx"
    )
    assert raw.schema() == {"name": "lookup", "description": "Look it up.", "parameters": ADDRESS}
    assert await raw.call(raw.parse_arguments('{"city": "Oslo"}'), "the context") == "sunny in Oslo"
    assert seen == [("Oslo", "the context")]


def test_typed_arguments_name_every_bad_field_by_its_path():
    import pydantic

    class Leg(pydantic.BaseModel):
        stops: list[int]

    @voxtrio.function_tool
    async def plan(Xpos: int, leg: Leg) -> str:
        return "ok"

    with pytest.raises(voxtrio.ToolArgumentsError) as error:
        plan.parse_arguments('{"Xpos": "left", "leg": {"stops": [1, "two"]}}')
    assert str(error.value) == (
        "field 'Xpos': Input should be a valid integer, unable to parse string as an integer; "
        "field 'leg.stops[1]': Input should be a valid integer, unable to parse string as an integer"
    )
