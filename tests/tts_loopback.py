"""What the ElevenLabs and Cartesia tests share: driving a streaming TTS
directly, and reading what a session's output device heard.

The clock, as for the Deepgram tests: trio's MockClock with autojump, real
sockets on loopback (a loopback send is in the peer's buffer before it
returns, so virtual time never jumps over a message in flight).
"""

from __future__ import annotations

import trio

import voxtrio
from voxtrio.providers.base import TTS_REQUEST_STARTED
from voxtrio.options import APIConnectOptions
from voxtrio.providers.base import SynthesizedAudio
from voxtrio.testing import ScriptedTransport

from stream_driver import drive

LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog. Then it runs far away into the woods, "
    "where nobody can find it. The end."
)


async def synthesize(tts, chunks, *, conn_options=APIConnectOptions(), chunk_delay=0.0, end_input=True):
    """Run one ``tts.stream`` over text ``chunks``; returns its items with
    the trio time each came at (the request-started marker included).
    ``end_input=False`` keeps the text open after the chunks."""
    text_send, text_receive = trio.open_memory_channel(100)

    async def feed():
        async with text_send:
            for chunk in chunks:
                await text_send.send(chunk)
                await trio.sleep(chunk_delay)
            if not end_input:
                await trio.sleep_forever()

    return await drive(lambda audio: tts.stream(text_receive, audio, conn_options=conn_options), feed)


def audio_of(items):
    return [item for _, item in items if isinstance(item, SynthesizedAudio)]


def seconds_of(items):
    return sum(item.frame.duration for item in audio_of(items))


def words_of(items):
    """The words the items carry, timed on the segment's clock."""
    words, offset = [], 0.0
    for item in audio_of(items):
        words.extend((w.text, round(w.start + offset, 3), round(w.end + offset, 3)) for w in item.words)
        offset += item.frame.duration
    return words


def started_marker_at(items):
    return [t for t, item in items if item == TTS_REQUEST_STARTED]


def same_words(got, expected, *, within=0.003):
    """The same words, each starting and ending within ``within`` seconds."""
    return len(got) == len(expected) and all(
        a[0] == b[0] and abs(a[1] - b[1]) <= within and abs(a[2] - b[2]) <= within for a, b in zip(got, expected)
    )


async def speak(tts, text, *, interrupt_at=None, options=None):
    """A session that says ``text`` (interrupted at ``interrupt_at``, trio
    time); returns the session, its events (with their time) and the output device."""
    session = voxtrio.AgentSession(tts=tts, **(options or {}))
    seen = []
    session.on("*", lambda e: seen.append((round(trio.current_time(), 3), e.type, e)))
    transport = ScriptedTransport(input_audio=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(session.main, voxtrio.Agent(), transport)
        handle = session.say(text)
        if interrupt_at is not None:
            await trio.sleep_until(interrupt_at)
            handle.interrupt()
        await handle
        await session.aclose()
    return session, seen, transport.audio_output


def heard_before(words, position):
    """The words (server truth) whose audio had fully played at ``position``."""
    return " ".join(w for w, _, end in words if end <= position + 1e-6)
