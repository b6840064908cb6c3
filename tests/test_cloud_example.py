"""examples/cloud_agent.py: each role takes the first provider whose key is set."""

import sys
from pathlib import Path

import pytest

from voxtrio.demo import load_module
from voxtrio.server.command import load_agent

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cloud_agent.py"
ALL_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPGRAM_API_KEY", "ELEVEN_API_KEY", "CARTESIA_API_KEY")


@pytest.fixture
def example(monkeypatch):
    for key in ALL_KEYS + ("VOXTRIO_LLM", "VOXTRIO_STT", "VOXTRIO_TTS"):
        monkeypatch.delenv(key, raising=False)
    module = load_module(EXAMPLE)
    yield module
    sys.modules.pop("weather_agent", None)


@pytest.mark.parametrize(
    "keys, expected",
    [
        ((), {"llm": "offline", "stt": "offline", "tts": "offline"}),
        (("OPENAI_API_KEY",), {"llm": "openai", "stt": "openai", "tts": "openai"}),
        (
            ("OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVEN_API_KEY"),
            {"llm": "openai", "stt": "deepgram", "tts": "elevenlabs"},
        ),
        (("ANTHROPIC_API_KEY", "CARTESIA_API_KEY"), {"llm": "anthropic", "stt": "offline", "tts": "cartesia"}),
    ],
)
def test_each_role_takes_the_first_provider_whose_key_is_set(example, keys, expected):
    environ = {key: "k" for key in keys}
    assert {role: example.choose(role, environ) for role in ("llm", "stt", "tts")} == expected


def test_a_forced_choice_wins_and_a_wrong_one_is_named(example):
    assert example.choose("llm", {"OPENAI_API_KEY": "k", "VOXTRIO_LLM": "offline"}) == "offline"
    with pytest.raises(ValueError, match="VOXTRIO_TTS='piper'"):
        example.choose("tts", {"VOXTRIO_TTS": "piper"})


def test_the_cloud_pipeline_is_built_from_the_keys_once(example, monkeypatch):
    for key in ("OPENAI_API_KEY", "DEEPGRAM_API_KEY", "ELEVEN_API_KEY"):
        monkeypatch.setenv(key, "test-key")
    from voxtrio.providers import deepgram, elevenlabs, openai
    from voxtrio.providers.silero_vad import SileroVAD

    providers = example.pipeline()
    assert isinstance(providers["llm"], openai.LLM)
    assert isinstance(providers["stt"], deepgram.STT)
    assert isinstance(providers["tts"], elevenlabs.TTS)
    assert isinstance(providers["vad"], SileroVAD)
    again = example.pipeline()
    assert all(again[role] is providers[role] for role in providers)


def test_serve_finds_the_exported_agent_and_the_pipeline_hook():
    agent, module = load_agent(str(EXAMPLE))
    assert agent.__name__ == "WeatherDesk"
    assert callable(module.pipeline)
    sys.modules.pop("weather_agent", None)
