"""The WebSocket providers (Deepgram, ElevenLabs, Cartesia) against the real services.

Each test runs only when its vendor's key is in the environment
(``DEEPGRAM_API_KEY``, ``ELEVEN_API_KEY``, ``CARTESIA_API_KEY``); the voices
can be chosen with ``ELEVEN_VOICE_ID`` and ``CARTESIA_VOICE_ID``. They run
on the real clock: the audio is paced in real time, the network is real.
"""

import os

import numpy as np
import pytest
import soxr

from voxtrio.providers import cartesia, deepgram, elevenlabs

from test_deepgram import finals, stt_events, transcribe
from tts_loopback import audio_of, seconds_of, synthesize, words_of


def needs(variable):
    return pytest.mark.skipif(not os.environ.get(variable), reason=f"{variable} is not set")


SENTENCE = "What is the weather in Paris today?"


@needs("DEEPGRAM_API_KEY")
async def test_deepgram_transcribes_speech_and_marks_its_boundaries():
    espeak_tts = pytest.importorskip("voxtrio.providers.espeak_tts", reason="needs voxtrio[local] for the speech")
    tts = espeak_tts.EspeakTTS()
    samples, _ = tts.render(SENTENCE)
    speech = soxr.resample(samples, tts.sample_rate, 16_000).astype(np.int16)
    audio = np.concatenate([np.zeros(8_000, np.int16), speech, np.zeros(40_000, np.int16)])
    items = await transcribe(deepgram.STT(), audio)
    heard = " ".join(text for text, _, _ in finals(items)).lower()
    assert "paris" in heard and "weather" in heard
    kinds = [event.kind for event in stt_events(items)]
    assert "start_of_speech" in kinds and "end_of_speech" in kinds and "interim" in kinds


async def _synthesized(tts):
    items = await synthesize(tts, ["Hello there. ", "The weather in Paris is sunny today."])
    assert seconds_of(items) > 1.0
    assert all(item.frame.sample_rate == tts.sample_rate for item in audio_of(items) if item.frame.samples_per_channel)
    words = words_of(items)
    assert [w for w, _, _ in words][:2] == ["Hello", "there."]
    assert all(start <= end for _, start, end in words)
    assert [start for _, start, _ in words] == sorted(start for _, start, _ in words)
    assert words[-1][2] <= seconds_of(items) + 0.05


@needs("ELEVEN_API_KEY")
async def test_elevenlabs_streams_pcm_with_word_timings():
    await _synthesized(elevenlabs.TTS(voice_id=os.environ.get("ELEVEN_VOICE_ID", "21m00Tcm4TlvDq8ikWAM")))


@needs("CARTESIA_API_KEY")
async def test_cartesia_streams_pcm_with_word_timestamps():
    await _synthesized(cartesia.TTS(voice=os.environ.get("CARTESIA_VOICE_ID", "a0e99841-438c-4a64-b679-ae501e7d6091")))
