"""Speaker: text to audio (TTS), audio to the output device at real-time pace.

Synthesis runs ahead of playout: the Planner asks for a segment to be
synthesized as soon as its text starts to exist, and asks for it to be played
once the speech is authorized. Synthesis is one request at a time, in request
order, so the next segment is ready while the previous one plays.

The package: ``actor`` (the inbox), ``synthesis`` (the TTS requests and the
segments they fill), ``playout`` (a segment played, and what was heard of
it), ``output`` (the device, its timeline and pauses), ``captions`` (the
agent's words shown as they are heard, for a transport that shows text:
``Transport.publish_text`` gets them by the same measure, and the final text
at the end).
"""

from .actor import Speaker
from .synthesis import SEGMENT_AUDIO_BUFFER, TTS_REQUEST_STARTED, TTS_STREAM_BUFFER

__all__ = ["SEGMENT_AUDIO_BUFFER", "TTS_REQUEST_STARTED", "TTS_STREAM_BUFFER", "Speaker"]
