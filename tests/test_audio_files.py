"""Sound files through libsndfile: every WAV sample format, FLAC and OGG in as int16,
WAV, FLAC and OGG/Opus out by extension, a typed error that says what a bad file holds."""

import struct
import wave

import numpy as np
import pytest
import soundfile

import voxtrio
from voxtrio.audio_files import read_audio_file, wav_bytes, write_audio_file
from voxtrio.testing import tone


def riff(fmt_body: bytes, data: bytes, *, extra_chunks: bytes = b"") -> bytes:
    fmt = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body = b"WAVE" + fmt + extra_chunks + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt(tag, channels, rate, bits):
    width = (bits + 7) // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, bits)


def test_round_trip_int16_stereo(tmp_path):
    samples = (np.arange(-1000, 1000, dtype=np.int16) * 16).astype(np.int16)
    write_audio_file(tmp_path / "a.wav", samples, 44_100, 2)
    audio = read_audio_file(tmp_path / "a.wav")
    assert (audio.sample_rate, audio.num_channels) == (44_100, 2)
    assert np.array_equal(audio.data, samples)
    assert not (tmp_path / "a.wav.partial").exists()
    # the standard library agrees with what we wrote
    with wave.open(str(tmp_path / "a.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (44_100, 2, 2, 1000)


EXPECTED = np.array([0, 256, -256, 12800, -12800, 32512, -32768], np.int16)


@pytest.mark.parametrize(
    "bits,tag,encode",
    [
        (8, 1, lambda x: (x // 256 + 128).astype(np.uint8).tobytes()),
        (12, 1, lambda x: x.astype("<i2").tobytes()),  # 12 bits, left-justified in 16
        (24, 1, lambda x: b"".join(int(v * 256).to_bytes(3, "little", signed=True) for v in x)),
        (32, 1, lambda x: (x.astype(np.int32) << 16).astype("<i4").tobytes()),
        (32, 3, lambda x: (x / 32768.0).astype("<f4").tobytes()),
        (64, 3, lambda x: (x / 32768.0).astype("<f8").tobytes()),
    ],
)
def test_other_sample_formats_become_int16(tmp_path, bits, tag, encode):
    path = tmp_path / "x.wav"
    path.write_bytes(riff(fmt(tag, 1, 8000, bits), encode(EXPECTED.astype(np.int64))))
    audio = read_audio_file(path)
    tolerance = 256 if bits == 8 else 1
    assert np.abs(audio.data.astype(int) - EXPECTED.astype(int)).max() <= tolerance


@pytest.mark.parametrize("subtype", ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"])
@pytest.mark.parametrize("container", ["WAV", "WAVEX"])
def test_every_wav_sample_format_soundfile_writes_is_read(tmp_path, container, subtype):
    stereo = np.stack([EXPECTED, -EXPECTED.clip(-32767)], axis=1)
    path = tmp_path / "x.wav"
    written = stereo / 32768.0 if subtype in ("FLOAT", "DOUBLE") else stereo
    soundfile.write(path, written, 22_050, format=container, subtype=subtype)
    if container == "WAVEX":
        assert struct.unpack("<H", path.read_bytes()[20:22]) == (0xFFFE,)
    audio = read_audio_file(path)
    assert (audio.sample_rate, audio.num_channels) == (22_050, 2)
    tolerance = 256 if subtype == "PCM_U8" else 1
    assert np.abs(audio.data.astype(int) - stereo.reshape(-1).astype(int)).max() <= tolerance


def test_floats_beyond_full_scale_are_clipped(tmp_path):
    path = tmp_path / "loud.wav"
    path.write_bytes(riff(fmt(3, 1, 8000, 32), np.array([0.5, 2.0, -3.0, 1.0, -1.0], "<f4").tobytes()))
    assert list(read_audio_file(path).data) == [16384, 32767, -32767, 32767, -32767]


def extensible(tag, channels, rate, bits, guid_tail=bytes.fromhex("000000001000800000aa00389b71")):
    return fmt(0xFFFE, channels, rate, bits) + struct.pack("<HHI", 22, bits, 3) + struct.pack("<H", tag) + guid_tail


def test_extensible_header_and_unknown_chunks_are_read(tmp_path):
    body = extensible(1, 2, 48_000, 16)
    data = np.array([1, 2, 3, 4], "<i2").tobytes()
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(body, data, extra_chunks=b"LIST" + struct.pack("<I", 3) + b"abc\x00"))
    audio = read_audio_file(path)
    assert (audio.sample_rate, audio.num_channels, list(audio.data)) == (48_000, 2, [1, 2, 3, 4])


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.ogg", "a.opus", "a.WAV"])
def test_each_format_is_written_by_extension_and_read_back(tmp_path, name):
    samples = tone(0.5, sample_rate=16_000, amplitude=8000)
    write_audio_file(tmp_path / name, samples, 16_000)
    expected = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".opus": "OGG"}[(tmp_path / name).suffix.lower()]
    assert soundfile.info(tmp_path / name).format == expected
    audio = read_audio_file(tmp_path / name)
    assert (audio.sample_rate, audio.num_channels) == (16_000, 1)
    if expected == "OGG":  # lossy: the same length, and the same tone give or take the codec
        assert soundfile.info(tmp_path / name).subtype == "OPUS"
        assert abs(len(audio.data) - len(samples)) <= 0.02 * 16_000
        assert np.std(audio.data.astype(float)) == pytest.approx(np.std(samples.astype(float)), rel=0.1)
    else:
        assert np.array_equal(audio.data, samples)


def test_ogg_at_a_rate_opus_cannot_encode_is_resampled(tmp_path):
    write_audio_file(tmp_path / "a.ogg", tone(1.0, sample_rate=44_100), 44_100)
    audio = read_audio_file(tmp_path / "a.ogg")
    assert audio.sample_rate == 48_000
    assert audio.duration == pytest.approx(1.0, abs=0.02)


def test_an_ogg_vorbis_file_is_read(tmp_path):
    samples = tone(0.5, sample_rate=16_000, amplitude=8000)
    soundfile.write(tmp_path / "v.ogg", samples, 16_000, format="OGG", subtype="VORBIS")
    audio = read_audio_file(tmp_path / "v.ogg")
    assert audio.sample_rate == 16_000 and audio.duration == pytest.approx(0.5, abs=0.01)
    assert np.std(audio.data.astype(float)) == pytest.approx(np.std(samples.astype(float)), rel=0.1)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"not a wav file at all", "not a sound file"),
        (b"", "not a sound file"),
        (riff(fmt(2, 1, 8000, 4), b""), "4-bit format 0x0002 WAV samples are not supported"),
        (riff(fmt(1, 1, 8000, 40), b"\0" * 10), "40-bit integer WAV samples are not supported"),
        (riff(fmt(3, 1, 8000, 16), b"\0" * 10), "16-bit float WAV samples are not supported"),
        (riff(fmt(1, 1, 4000, 16), b""), "sample rate 4000"),
        (riff(fmt(1, 1, 0, 16), b"\0" * 10), "sample rate 0 Hz"),
        (riff(fmt(1, 12, 8000, 16), b""), "12 channels"),
        (riff(fmt(1, 0, 8000, 16), b"\0" * 10), "0 channels"),
        (riff(fmt(3, 1, 8000, 32), np.array([np.nan], "<f4").tobytes()), "NaN"),
        (riff(fmt(3, 1, 8000, 64), np.array([0.1, -np.inf], "<f8").tobytes()), "infinity"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", "no 'data' chunk"),
        (riff(b"\x01\x00\x01\x00", b"\0" * 10), "'fmt ' chunk is 4 bytes"),
        (riff(extensible(1, 1, 8000, 16, b"\0" * 14), b"\0" * 10), "subformat GUID 0100000000"),
        (riff(extensible(3, 1, 8000, 24), b"\0" * 9), "24-bit float WAV samples are not supported"),
    ],
)
def test_malformed_files_raise_audio_format_error(tmp_path, content, message):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(voxtrio.AudioFormatError, match=message):
        read_audio_file(path)


def test_a_sound_file_outside_voxtrio_s_limits_is_refused_whatever_its_format(tmp_path):
    soundfile.write(tmp_path / "slow.flac", np.zeros(10, np.int16), 4_000)
    with pytest.raises(voxtrio.AudioFormatError, match="sample rate 4000 Hz is outside 8000..192000 Hz"):
        read_audio_file(tmp_path / "slow.flac")
    soundfile.write(tmp_path / "wide.wav", np.zeros((10, 9), np.int16), 16_000)
    with pytest.raises(voxtrio.AudioFormatError, match="9 channels, expected 1..8"):
        read_audio_file(tmp_path / "wide.wav")


def test_missing_file_is_an_audio_format_error(tmp_path):
    with pytest.raises(voxtrio.AudioFormatError, match="cannot read"):
        read_audio_file(tmp_path / "nope.wav")


def test_write_rejects_non_int16_and_ragged_channels(tmp_path):
    with pytest.raises(voxtrio.AudioFormatError, match="int16"):
        write_audio_file(tmp_path / "f.wav", np.zeros(10, np.float32), 16_000)
    with pytest.raises(voxtrio.AudioFormatError, match="cannot be split into 2 channels"):
        write_audio_file(tmp_path / "f.wav", np.zeros(11, np.int16), 16_000, 2)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["f.mp3", "f", "f.wav.tmp"])
def test_write_refuses_an_extension_it_cannot_write(tmp_path, name):
    with pytest.raises(voxtrio.AudioFormatError, match="use .wav, .flac, .ogg, .opus"):
        write_audio_file(tmp_path / name, np.zeros(10, np.int16), 16_000)


def test_wav_bytes_is_a_16_bit_pcm_wav():
    samples = np.array([1, -2, 3, -4, 5, -6], np.int16)
    content = wav_bytes(samples, 8_000, 2)
    assert content[:4] == b"RIFF" and content[8:16] == b"WAVEfmt "
    assert struct.unpack("<HHIIHH", content[20:36]) == (1, 2, 8_000, 32_000, 4, 16)
    assert content[36:40] == b"data" and content[44:] == samples.astype("<i2").tobytes()


def test_word_error_rate_counts_edits_over_reference_words():
    from voxtrio.testing import word_error_rate

    assert word_error_rate("What is the weather in Paris?", "what is the weather in paris") == 0.0
    assert word_error_rate("the weather in Oslo", "the weather in a soul") == pytest.approx(2 / 4)
    assert word_error_rate("one two three", "one three") == pytest.approx(1 / 3)
    assert word_error_rate("", "") == 0.0
