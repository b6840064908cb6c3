"""The server side of "phone call v1": a TelephonyServer (Twilio) with the bench fakes.

Two kinds of server answer the same calls (``--framework``):

* ``voxtrio``: each call runs one ``voxtrio.AgentSession`` with the real
  actors through ``PhoneCall.run`` (transport -> AudioIn -> VAD + Recognizer
  -> Turn -> Planner -> Speaker -> the call's ``TelephonyAudioOutput``), the
  VAD, LLM and TTS fakes and settings of scripted call v1
  (``adapters/voxtrio_rt.py``), and ``HeardSTT``, which must hear the end of
  each user turn in the audio: the server is never told.
* ``transport``: "the transport alone". The same TelephonyServer, webhook,
  WebSocket, Twilio serializer, μ-law codec and chunked, mark-timed
  TelephonyAudioOutput, and the resampling voxtrio does (8 kHz -> 16 kHz in,
  24 kHz -> 8 kHz out), with no voxtrio runtime: one task per call runs an
  energy VAD and ``EndOfSpeech`` on the decoded audio and answers each turn
  with the script's reply audio on the fakes' timing (LLM first token 150 ms,
  tokens 10 ms apart, TTS 100 ms per sentence, the tool turn one more first
  token), paced as the Speaker paces (refill when half of 300 ms is left),
  and clears on barge-in. voxtrio's runtime costs what voxtrio costs more.

Once the warm-up call is over, the server tunes the garbage collector as
``voxtrio serve`` does (``voxtrio.tune_collector_for_calls``; ``--default-gc``
keeps CPython's settings). The process is driven by ``phone_call.py`` over stdin/stdout, one JSON line
each way: it prints ``{"port": ...}`` once listening; ``measure`` (after the
generator's warm-up call) starts the measurement, ``report`` ends it and
prints the server's figures: CPU samples, loop lag, GC pauses, and per call
what the transport counted and what the session's history recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys

import attrs
import numpy as np
import trio

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import procstat  # noqa: E402
from harness import workload as W  # noqa: E402
from harness.call import FULL, QUICK, WARMUP, ScriptSpec  # noqa: E402
from harness.gcpauses import GCPauses  # noqa: E402

AUTH_TOKEN = "phone-call-v1-auth-token"
SCRIPTS = {"full": FULL, "quick": QUICK}
# A speech run shorter than this is not a user turn (the script's are 50 or 100 frames).
MIN_TURN_FRAMES = 10


# ------------------------------------------------------------- end of speech (pure)
class EndOfSpeech:
    """What a streaming recognizer hears: where each user turn ends.

    Fed every pipeline frame with the time it was heard. A frame is speech by
    the workload's energy rule (RMS > 500). A run of at least
    ``MIN_TURN_FRAMES`` speech frames is a turn; the first frame after it
    that is not speech ends it, and its final transcript is due
    ``STT_FINAL_DELAY_S`` after the last speech frame was heard (the silent
    frame that tells comes 20 ms after it, well within the 100 ms). The
    transcript is the script's text for the turn (``turn`` counts them):
    what the user says is the script, when it ends is only in the audio.
    """

    def __init__(self, spec: ScriptSpec) -> None:
        self.spec = spec
        self.turn = 0  # turns heard so far
        self.run = 0  # speech frames in the current run
        self.last_speech_at: float | None = None

    def feed(self, pcm: np.ndarray, now: float) -> tuple[float, int, str] | None:
        """(when the final is due, the turn, its transcript) once a turn has ended."""
        return self.heard(W.is_speech(pcm), now)

    def heard(self, speech: bool, now: float) -> tuple[float, int, str] | None:
        """``feed`` for a frame already classified (``speech``: RMS > 500)."""
        if speech:
            self.run += 1
            self.last_speech_at = now
            return None
        run, self.run = self.run, 0
        if run < MIN_TURN_FRAMES or self.last_speech_at is None or self.turn >= self.spec.turns:
            return None
        k = self.turn
        self.turn += 1
        return self.last_speech_at + W.STT_FINAL_DELAY_S, k, self.spec.transcript(k)


# ------------------------------------------------------------------- the voxtrio fakes
def heard_stt(spec: ScriptSpec):  # type: ignore[no-untyped-def]
    from voxtrio.messages import STTEvent
    from voxtrio.providers.base import STT, STTCapabilities

    class HeardSTT(STT):
        """Streaming, no interims: one FINAL per turn ``EndOfSpeech`` hears."""

        capabilities = STTCapabilities(streaming=True, interim_results=False)

        def __init__(self) -> None:
            self.rule = EndOfSpeech(spec)
            self.finals = 0

        async def stream(self, frames, events, *, language=None, conn_options=None) -> None:  # type: ignore[no-untyped-def]
            due_send, due_receive = trio.open_memory_channel[tuple[float, str]](16)

            async def emit() -> None:
                async for due, text in due_receive:
                    await trio.sleep_until(due)
                    self.finals += 1
                    await events.send(STTEvent(kind="final", text=text, language="en"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(emit)
                async with due_send:
                    async for frame in frames:
                        ended = self.rule.feed(frame.data, trio.current_time())
                        if ended is not None:
                            due_send.send_nowait((ended[0], ended[2]))
                nursery.cancel_scope.cancel()  # the input ended: a final still due is not sent

    return HeardSTT()


class _TTSCounter:
    """What BenchTTS reports each request to (the harness's ``io.tts_request``)."""

    def __init__(self) -> None:
        self.requests = 0
        self.mismatches = 0

    def tts_request(self, text: str) -> None:
        self.requests += 1
        self.mismatches += text.strip() not in W.SENTENCES


def history_check(session) -> dict:  # type: ignore[no-untyped-def]
    """What the session's history says was said and heard."""
    said = [m for m in session.history.items if m.type == "message"]
    assistant = [m for m in said if m.role == "assistant"]
    cut = [m for m in assistant if m.interrupted]
    return {
        "user_messages": sum(m.role == "user" for m in said),
        "assistant_messages": len(assistant),
        "interrupted": len(cut),
        # the interrupted reply records what the caller heard: a prefix, never the whole
        "interrupted_chars": [len(m.content) for m in cut],
        "whole_replies": sum(m.content == W.REPLY for m in assistant),
    }


# --------------------------------------------------------------------- the server
@dataclasses.dataclass
class Served:
    """Per-call figures, kept only for calls that began while measuring."""

    calls: list[dict] = dataclasses.field(default_factory=list)
    measuring: bool = False


def voxtrio_entrypoint(spec: ScriptSpec, served: Served):  # type: ignore[no-untyped-def]
    import voxtrio
    from adapters.voxtrio_rt import SESSION_OPTIONS, BenchLLM, BenchTTS, OrderAgent, bench_vad

    async def entrypoint(call) -> None:  # type: ignore[no-untyped-def]
        measured, begin = served.measuring, trio.current_time()
        stt, tts = heard_stt(spec if measured else WARMUP), _TTSCounter()
        session = voxtrio.AgentSession(vad=bench_vad(), stt=stt, llm=BenchLLM(), tts=BenchTTS(tts), **SESSION_OPTIONS)
        try:
            await call.run(session, OrderAgent())
        finally:
            if measured:
                served.calls.append(
                    _call_figures(call, begin) | {"finals": stt.finals, "tts_requests": tts.requests,
                                                  "tts_mismatches": tts.mismatches, "history": history_check(session)}
                )

    return entrypoint


def _call_figures(call, begin: float) -> dict:  # type: ignore[no-untyped-def]
    stats = call.transport.stats
    return {"stream": call.stream_id, "duration_s": trio.current_time() - begin, **attrs.asdict(stats)}


# ------------------------------------------------------------- the transport alone
def transport_entrypoint(spec: ScriptSpec, served: Served):  # type: ignore[no-untyped-def]
    import soxr

    from voxtrio.audio import AudioFrame

    tts_frames = tuple(AudioFrame(np.frombuffer(c, np.int16), W.OUT_RATE) for c in W.TTS_CHUNKS)
    buffer_s = 0.3  # TelephonyAudioOutput's buffer_duration, as the Speaker reads it

    async def entrypoint(call) -> None:  # type: ignore[no-untyped-def]
        measured, begin = served.measuring, trio.current_time()
        rule = EndOfSpeech(spec if measured else WARMUP)
        transport, output = call.transport, call.transport.audio_output
        frames_send, frames = trio.open_memory_channel[AudioFrame](50)
        resampler = soxr.ResampleStream(8000, W.IN_RATE, 1, dtype="int16", quality="LQ")  # as AudioIn
        pending = np.zeros(0, np.int16)
        state = {"speech": 0, "silence": 0, "speaking": False, "ended": False, "transcript": None}
        reply: list[trio.CancelScope] = []
        finals = 0

        async def answer(turn: int, scope: trio.CancelScope) -> None:
            with scope:
                start = trio.current_time()
                if turn == rule.spec.tool_turn:
                    await trio.sleep_until(start + W.LLM_TTFT_S)
                    start = trio.current_time()
                ready: list[tuple[trio.Event, list]] = []
                more = trio.Event()

                async def synthesize(sentence: str, done: trio.Event, out: list) -> None:
                    await trio.sleep(W.TTS_TTFB_S)
                    out.append(tts_frames[: W.tts_chunk_count(sentence)])
                    done.set()

                async def generate(inner: trio.Nursery) -> None:
                    text = ""
                    for i, token in enumerate(W.REPLY_TOKENS):
                        await trio.sleep_until(start + W.LLM_TTFT_S + (i + 1) * W.LLM_TOKEN_S)
                        text += token
                        if text.endswith((".", "?", "!")):
                            done, out = trio.Event(), []
                            inner.start_soon(synthesize, text.strip(), done, out)
                            ready.append((done, out))
                            more.set()
                            text = ""

                async with trio.open_nursery() as inner:
                    inner.start_soon(generate, inner)
                    end = trio.current_time()
                    for n in range(len(W.SENTENCES)):
                        while len(ready) <= n:
                            await more.wait()
                            more = trio.Event()
                        done, out = ready[n]
                        await done.wait()
                        for frame in out[0]:
                            now = trio.current_time()
                            end = max(end, now)
                            if end + frame.duration - now > buffer_s:  # the Speaker's refill rule
                                await trio.sleep_until(end - buffer_s / 2)
                            await output.write(frame)
                            end += frame.duration
                        output.segment_done()
                    await trio.sleep_until(end)  # played out: a barge-in after this clears nothing
            if reply and reply[-1] is scope:
                reply.pop()

        async def listen(nursery: trio.Nursery) -> None:
            nonlocal pending
            async for frame in frames:
                pcm = resampler.resample_chunk(frame.data)
                pending = np.concatenate([pending, pcm]) if len(pending) else pcm
                while len(pending) >= W.IN_FRAME_SAMPLES:
                    window, pending = pending[: W.IN_FRAME_SAMPLES], pending[W.IN_FRAME_SAMPLES :]
                    speech = W.is_speech(window)  # one energy decision for the STT rule and the VAD
                    ended = rule.heard(speech, trio.current_time())
                    if ended is not None:
                        nursery.start_soon(final_after, nursery, ended[0], ended[1])
                    if speech:
                        state["speech"], state["silence"] = state["speech"] + 1, 0
                        if not state["speaking"] and state["speech"] >= W.VAD_START_FRAMES:
                            state["speaking"], state["ended"] = True, False
                            if reply:  # a reply is being spoken: barge-in
                                reply.pop().cancel()
                                output.clear()
                    else:
                        state["silence"], state["speech"] = state["silence"] + 1, 0
                        if state["speaking"] and state["silence"] >= W.VAD_STOP_FRAMES:
                            state["speaking"], state["ended"] = False, True
                            maybe_reply(nursery)

        async def final_after(nursery: trio.Nursery, due: float, turn: int) -> None:
            nonlocal finals
            await trio.sleep_until(due)
            finals += 1
            state["transcript"] = turn
            maybe_reply(nursery)

        def maybe_reply(nursery: trio.Nursery) -> None:
            if state["ended"] and state["transcript"] is not None:
                scope = trio.CancelScope()
                reply.append(scope)
                nursery.start_soon(answer, state["transcript"], scope)
                state["ended"], state["transcript"] = False, None

        async def read() -> None:
            from voxtrio.transports.base import TransportDisconnected

            try:
                await transport.read_audio(frames_send)
            except TransportDisconnected:
                pass
            frames_send.close()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await listen(nursery)
                nursery.cancel_scope.cancel()
        finally:
            if measured:
                served.calls.append(_call_figures(call, begin) | {"finals": finals})

    return entrypoint


# ------------------------------------------------------------------------- main
async def serve(framework: str, spec: ScriptSpec, max_calls: int, output_options: dict, default_gc: bool) -> None:
    from voxtrio.transports.telephony import TelephonyServer, Twilio

    served = Served()
    make = voxtrio_entrypoint if framework == "voxtrio" else transport_entrypoint
    server = TelephonyServer(make(spec, served), [Twilio(auth_token=AUTH_TOKEN)], max_calls=max_calls,
                             output_options=output_options)
    lags: list[float] = []
    control = trio.wrap_file(sys.stdin)

    def say(message: dict) -> None:
        print(json.dumps(message), flush=True)

    async def lag_probe() -> None:
        """The server loop's lag on the 20 ms input schedule (the scripted call's input lag)."""
        base, k = trio.current_time(), 0
        while True:
            slot = base + k * W.FRAME_S
            if slot > trio.current_time():
                await trio.sleep_until(slot)
            if served.measuring:
                lags.append(max(0.0, trio.current_time() - slot))
            k += 1

    calib_ms = procstat.calibrate()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: server.serve(port=0, task_status=task_status))
        say({"port": port, "pid": os.getpid()})
        nursery.start_soon(lag_probe)
        assert (await control.readline()).strip() == "measure"
        if default_gc:
            gc.collect()
        else:  # as voxtrio's server commands do before their first call (voxtrio/collector.py)
            import voxtrio

            voxtrio.tune_collector_for_calls()
        served.measuring = True
        with GCPauses() as pauses:
            before = procstat.sample()
            say({"measuring": True})
            assert (await control.readline()).strip() == "report"
            while server.calls:  # the last calls' entrypoints are finishing
                await trio.sleep(0.05)
            after = procstat.sample()
        served.measuring = False
        say({
            "before": dataclasses.asdict(before), "after": dataclasses.asdict(after), "lags": lags,
            "calls": served.calls, "gc": pauses.summary(), "calib_ms": calib_ms, "core": procstat.pinned_core(),
            "calls_failed": server.stats.calls_failed, "streams_refused": dict(server.stats.streams_refused),
            "webhooks_refused": dict(server.stats.webhooks_refused), "rss_mb": procstat.max_rss_bytes() / 2**20,
        })
        nursery.cancel_scope.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--framework", choices=("voxtrio", "transport"), default="voxtrio")
    ap.add_argument("--script", choices=sorted(SCRIPTS), default="full")
    ap.add_argument("--max-calls", type=int, default=1000)
    ap.add_argument("--output-options", default="{}", help="JSON: TelephonyAudioOutput options (max_chunk, hold...)")
    ap.add_argument("--core", type=int, default=None)
    ap.add_argument("--default-gc", action="store_true", help="CPython's collector settings (no tune_collector_for_calls)")
    args = ap.parse_args()
    if args.core is not None:
        os.sched_setaffinity(0, {args.core})
    import logging

    logging.basicConfig(level=logging.WARNING)
    trio.run(serve, args.framework, SCRIPTS[args.script], args.max_calls, json.loads(args.output_options), args.default_gc)


if __name__ == "__main__":
    main()
