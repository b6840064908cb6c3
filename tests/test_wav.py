"""WAV reading and writing: every sample layout in, int16 out, typed errors for the rest."""

import struct
import wave

import numpy as np
import pytest

import voxtrio
from voxtrio.wav import read_wav, write_wav


def riff(fmt_body: bytes, data: bytes, *, extra_chunks: bytes = b"") -> bytes:
    fmt = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body = b"WAVE" + fmt + extra_chunks + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(tag, channels, rate, bits):
    return struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)


def test_round_trip_int16_stereo(tmp_path):
    samples = (np.arange(-1000, 1000, dtype=np.int16) * 16).astype(np.int16)
    write_wav(tmp_path / "a.wav", samples, 44_100, 2)
    audio = read_wav(tmp_path / "a.wav")
    assert (audio.sample_rate, audio.num_channels) == (44_100, 2)
    assert np.array_equal(audio.samples, samples)
    # the standard library agrees with what we wrote
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (44_100, 2, 2, 1000)


@pytest.mark.parametrize(
    "bits,tag,encode",
    [
        (8, 1, lambda x: (x // 256 + 128).astype(np.uint8).tobytes()),
        (24, 1, lambda x: b"".join(int(v * 256).to_bytes(3, "little", signed=True) for v in x)),
        (32, 1, lambda x: (x.astype(np.int32) << 16).astype("<i4").tobytes()),
        (32, 3, lambda x: (x / 32768.0).astype("<f4").tobytes()),
        (64, 3, lambda x: (x / 32768.0).astype("<f8").tobytes()),
    ],
)
def test_other_sample_formats_become_int16(tmp_path, bits, tag, encode):
    expected = np.array([0, 256, -256, 12800, -12800, 32512, -32768], np.int16)
    path = tmp_path / "x.wav"
    path.write_bytes(riff(fmt(tag, 1, 8000, bits), encode(expected.astype(np.int64))))
    audio = read_wav(path)
    tolerance = 256 if bits == 8 else 1
    assert np.abs(audio.samples.astype(int) - expected.astype(int)).max() <= tolerance


def test_extensible_header_and_unknown_chunks_are_read(tmp_path):
    body = fmt(0xFFFE, 2, 48_000, 16) + struct.pack("<HHI", 22, 16, 3) + struct.pack("<H", 1) + b"\x00" * 14
    data = np.array([1, 2, 3, 4], "<i2").tobytes()
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(body, data, extra_chunks=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))
    audio = read_wav(path)
    assert (audio.sample_rate, audio.num_channels, list(audio.samples)) == (48_000, 2, [1, 2, 3, 4])


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a wav file at all", "not a WAV file"),
        (riff(fmt(2, 1, 8000, 4), b""), "not PCM or float"),
        (riff(fmt(1, 1, 4000, 16), b""), "sample rate 4000"),
        (riff(fmt(1, 12, 8000, 16), b""), "12 channels"),
        (riff(fmt(1, 1, 8000, 12), b""), "12-bit integer"),
        (riff(fmt(3, 1, 8000, 32), np.array([np.nan], "<f4").tobytes()), "NaN"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "no 'data' chunk"),
    ],
)
def test_malformed_files_raise_audio_format_error(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(voxtrio.AudioFormatError, match=message):
        read_wav(path)


def test_missing_file_is_an_audio_format_error(tmp_path):
    with pytest.raises(voxtrio.AudioFormatError, match="cannot read"):
        read_wav(tmp_path / "nope.wav")


def test_write_rejects_non_int16(tmp_path):
    with pytest.raises(voxtrio.AudioFormatError):
        write_wav(tmp_path / "f.wav", np.zeros(10, np.float32), 16_000)


def test_word_error_rate_counts_edits_over_reference_words():
    from voxtrio.testing import word_error_rate

    assert word_error_rate("What is the weather in Paris?", "what is the weather in paris") == 0.0
    assert word_error_rate("the weather in Oslo", "the weather in a soul") == pytest.approx(2 / 4)
    assert word_error_rate("one two three", "one three") == pytest.approx(1 / 3)
    assert word_error_rate("", "") == 0.0
