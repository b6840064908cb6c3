"""Recognizer actor: the user's audio to transcripts, through the STT provider.

A streaming STT gets every frame as it comes: AudioIn sends straight into the
running stream's channel (10 s deep). Besides transcripts it may report its
usage (``STTUsage``: a ``metrics_collected`` event of kind ``stt``) and a
connection it replaced by itself (``STTReconnected``: a recoverable ``error``
event). The stream heals itself: after an
``APIError`` it is opened again after a backoff (``retry_delay``; audio of
the backoff itself reaches no stream), and each failure is an ``error`` event; one that exhausts ``max_retry`` attempts in a row is
unrecoverable and counts toward the session's error budget. A transcript
resets the streak (and the Session's STT error count).

A non-streaming STT is driven by VAD segments: frames are kept from a short
pre-roll before the VAD's start of speech to its end of speech, and that
segment is recognized as one utterance (the final transcript).

``FlushRecognizer`` asks for a final transcript of what was heard so far
(``commit_user_turn``); ``ResetRecognizer`` drops buffered audio and restarts
the stream (``clear_user_turn``).
"""

from __future__ import annotations

import collections
import math
from typing import assert_never

import numpy as np
import trio

from ..audio import AudioFrame
from ..errors import APIError, describe_error
from ..events import ErrorEvent, EventBus, MetricsCollected
from ..links import RECOGNIZER_BACKLOG, RECOGNIZER_EVENTS, RecognizerEnds, StreamedAudio, SupervisorLink, TurnEventLink
from ..messages import FlushRecognizer, OptionsChanged, ProviderFailed, ResetRecognizer, STTEvent, VADEvent
from ..options import SessionOptions
from ..providers.base import STT, STTReconnected, STTStreamItem, STTUsage, check_stt_event
from ..retry import retrying, unwrap

# Audio kept before the VAD's start of speech (its detection is late by design).
PRE_ROLL = 0.3
# The longest utterance a non-streaming recognizer is given at once.
MAX_SEGMENT = 60.0


class Recognizer:
    def __init__(
        self,
        *,
        stt: STT,
        bus: EventBus,
        options: SessionOptions,
        ends: RecognizerEnds,
        turn_events: TurnEventLink,
        supervisor: SupervisorLink,
        language: str | None = None,
    ) -> None:
        self._stt = stt
        self._bus = bus
        self._options = options
        self._turn = turn_events
        self._supervisor = supervisor
        self._language = language
        # A streaming STT: AudioIn's frames go straight into the current
        # stream's channel. Else they wait in a channel for the segment.
        self._input = ends.audio if isinstance(ends.audio, StreamedAudio) else None
        if ends.audio_out is not None:
            self._frames = ends.audio_out
        self._vad_events = ends.vad_out
        self._inbox = ends.inbox
        self._restart: trio.CancelScope | None = None
        # non-streaming: the segment being collected
        self._recent: collections.deque[AudioFrame] = collections.deque()
        self._segment_frames: list[AudioFrame] = []
        self._segment_start: float | None = None
        self._recognitions: trio.MemorySendChannel[list[AudioFrame]] | None = None
        self._changed = trio.Event()
        self._latest = 0.0
        self._failures = 0

    @property
    def streaming(self) -> bool:
        return self._stt.capabilities.streaming

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read_control)
            if self.streaming:
                # VAD events only matter to a segmented recognizer; the session
                # sends none to a streaming one.
                task_status.started()
                await self._run_streaming()
            else:
                task_status.started()
                await self._run_segmented()
            nursery.cancel_scope.cancel()

    async def _read_control(self) -> None:
        async for message in self._inbox:
            match message:
                case FlushRecognizer():
                    self._flush()
                case ResetRecognizer():
                    self._reset()
                case OptionsChanged():
                    self._options = message.options
                case _:
                    assert_never(message)

    # -- streaming -----------------------------------------------------------------

    async def _run_streaming(self) -> None:
        conn_options = self._options.conn_options.stt_conn_options
        link = self._input
        assert link is not None
        while not link.closed:
            send, receive = trio.open_memory_channel[AudioFrame](RECOGNIZER_BACKLOG)
            link.target = send
            events_send, events_receive = trio.open_memory_channel[STTStreamItem](RECOGNIZER_EVENTS)
            try:
                with trio.CancelScope() as restart:
                    self._restart = restart
                    async with trio.open_nursery() as stream:
                        stream.start_soon(self._forward, events_receive)
                        async with events_send:
                            await self._stt.stream(
                                receive,
                                events_send,
                                language=self._language,
                                conn_options=conn_options,
                            )
                if not restart.cancelled_caught:
                    return  # the input ended and the stream finished
            except Exception as raised:  # any failure of the provider, its bugs included
                await self._stream_failed(unwrap(raised))
            finally:
                self._restart = None
                link.target = None
                send.close()

    async def _stream_failed(self, error: BaseException) -> None:
        conn_options = self._options.conn_options.stt_conn_options
        self._failures += 1
        retryable = isinstance(error, APIError) and error.retryable
        recoverable = retryable and self._failures <= conn_options.max_retry
        self._bus.emit(
            ErrorEvent(source="stt", message=describe_error(error), recoverable=recoverable, error=error)
        )
        if not recoverable:
            self._failures = 0
            await self._supervisor.send(ProviderFailed(source="stt", error=error))
        await trio.sleep(conn_options.retry_delay(max(0, self._failures - 1)))

    async def _forward(self, receive: trio.MemoryReceiveChannel[STTStreamItem]) -> None:
        async for event in receive:
            if isinstance(event, STTUsage):
                metrics = {"audio_duration": event.audio_duration}
                if event.latency is not None:
                    metrics["duration"] = event.latency
                self._bus.emit(MetricsCollected(kind="stt", metrics=metrics, provider=self._stt))
                continue
            if isinstance(event, STTReconnected):
                error = event.error
                self._bus.emit(ErrorEvent(source="stt", message=describe_error(error), recoverable=True, error=error))
                continue
            check_stt_event(event)
            if event.kind == "final" and event.text:
                self._failures = 0
            await self._turn.send(event)

    def _flush(self) -> None:
        if self.streaming:
            target = self._input.target if self._input is not None else None
            if target is not None:
                try:
                    target.send_nowait(AudioFrame(np.zeros(0, np.int16), 16_000))
                except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
        elif self._segment_start is not None and self._segment_frames and self._recognitions is not None:
            # Recognize what was said so far; the rest of the speech starts a new segment.
            segment, self._segment_frames = self._segment_frames, []
            self._segment_start = (segment[-1].timestamp or 0.0) + segment[-1].duration
            self._recognitions.send_nowait(segment)

    def _reset(self) -> None:
        if self.streaming:
            if self._restart is not None:
                self._restart.cancel()
        else:
            self._segment_start = None
            self._segment_frames.clear()

    # -- non-streaming: VAD segments ------------------------------------------------------

    async def _run_segmented(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._collect_frames)
            recognitions = trio.open_memory_channel[list[AudioFrame]](math.inf)
            self._recognitions = recognitions[0]
            nursery.start_soon(self._recognize_segments, recognitions[1])
            async for event in self._vad_events:
                if event.kind == "start_of_speech":
                    start = event.timestamp - event.speech_duration - PRE_ROLL
                    self._segment_start = start
                    self._segment_frames = [f for f in self._recent if (f.timestamp or 0) + f.duration > start]
                elif event.kind == "end_of_speech" and self._segment_start is not None:
                    end = event.timestamp - event.silence_duration + PRE_ROLL
                    await self._frames_until(end)
                    segment = [f for f in self._segment_frames if (f.timestamp or 0) < end]
                    self._segment_start = None
                    self._segment_frames = []
                    recognitions[0].send_nowait(segment)
            recognitions[0].close()

    def _segment_changed(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _collect_frames(self) -> None:
        async for frame in self._frames:
            self._recent.append(frame)
            while self._recent and self._recent[0].timestamp is not None and (
                (frame.timestamp or 0) - (self._recent[0].timestamp or 0) > PRE_ROLL + 0.5
            ):
                self._recent.popleft()
            if self._segment_start is not None and len(self._segment_frames) * frame.duration < MAX_SEGMENT:
                self._segment_frames.append(frame)
            self._latest = (frame.timestamp or 0) + frame.duration
            self._segment_changed()

    async def _frames_until(self, end: float) -> None:
        # The VAD's end of speech may arrive before the last frames it judged.
        with trio.move_on_after(1.0):
            while self._latest < end:
                await self._changed.wait()

    async def _recognize_segments(self, segments: trio.MemoryReceiveChannel[list[AudioFrame]]) -> None:
        async for segment in segments:
            if not segment:
                continue
            audio = AudioFrame(
                np.concatenate([f.data for f in segment]), segment[0].sample_rate, 1, segment[0].timestamp
            )
            await self._recognize(audio)

    async def _recognize(self, audio: AudioFrame) -> None:
        conn_options = self._options.conn_options.stt_conn_options

        def on_error(error: BaseException, recoverable: bool) -> None:
            self._bus.emit(
                ErrorEvent(source="stt", message=describe_error(error), recoverable=recoverable, error=error)
            )

        async def attempt() -> STTEvent:
            return check_stt_event(
                await self._stt.recognize(audio, language=self._language, conn_options=conn_options)
            )

        started = trio.current_time()
        try:
            event = await retrying(attempt, conn_options=conn_options, on_error=on_error)
        except Exception as error:  # reported by on_error
            await self._supervisor.send(ProviderFailed(source="stt", error=error))
            return
        self._bus.emit(
            MetricsCollected(
                kind="stt",
                metrics={"duration": trio.current_time() - started, "audio_duration": audio.duration},
                provider=self._stt,
            )
        )
        if event.start_time is None:
            event = STTEvent(
                kind=event.kind,
                text=event.text,
                language=event.language,
                confidence=event.confidence,
                start_time=audio.timestamp,
                end_time=(audio.timestamp or 0.0) + audio.duration,
            )
        await self._turn.send(event)
