"""Framework-agnostic harness for the "scripted call v1" benchmark.

Spec: ``docs/bench-workload.md``. The harness owns everything that must
be identical across frameworks -- the input audio and its schedule, the
user's reactive script, the fake providers' texts and timings, the playout
sink, the metrics and the JSON result line -- so that a framework adapter only
translates between the harness and that framework's public API.

Layout (pure modules have no event loop and no clock; callers pass ``now``):

* ``workload``  constants, audio frames, reply tokens/sentences, ``is_speech``  (pure)
* ``call``      one call: the user script state machine + per-call records    (pure)
* ``playout``   the 24 kHz device model: 200 ms buffer, back-pressure, clear  (pure)
* ``metrics``   percentiles, the real-time verdict, the result dict            (pure)
* ``procstat``  CPU (getrusage), RSS (statm), contention (/proc/stat, schedstat)
* ``aio``       asyncio driver: global ticker, awaitable ``Sink``, ``measure()``

Plugging in a framework = writing one module in ``bench/adapters/`` with:

``NAME: str``
    Short name used on the command line and in the result ("livekit").
``version() -> str``
    The framework's installed version.
``DRIVER: str``
    ``"asyncio"`` (use ``harness.aio.measure``) or ``"trio"`` (needs a
    ``harness/trio_driver.py`` mirroring ``aio``: the ticker with
    ``trio.sleep_until``, a ``Sink`` whose blocked ``write`` waits on a
    ``trio.Event``/cancel scope that ``clear()`` releases, and ``measure``
    opening calls in a nursery; ``call``/``playout``/``metrics`` are reused
    as they are).
``async open_session(io) -> Session``
    Build and start one framework session and return once it accepts audio.
    ``io.sink`` is the call's playout device: ``await io.sink.write(n)`` for
    every agent audio frame of ``n`` 24 kHz samples (it blocks while > 200 ms
    is queued), ``io.sink.clear()`` when the framework interrupts playback,
    ``io.sink.queued()`` / ``io.sink.call_when_drained(cb)`` to report
    playback progress back to the framework. The fake TTS must call
    ``io.tts_request(text)`` once per synthesis request.

``server_ready() -> None`` (optional)
    What the framework's own server does once it is up and before it takes
    calls; the driver calls it after the warm-up call (voxtrio: freeze the
    start-up objects out of the garbage collector's reach, as ``voxtrio serve``
    does).

``Session`` (see ``aio.Session``) has three methods, all called by the driver:

* ``push_audio(pcm)`` -- one 20 ms, 16 kHz PCM16 frame; must not block.
* ``end_of_speech(transcript)`` -- the last speech frame of a user turn was
  just pushed; the fake STT must emit ``transcript`` as its one FINAL result
  ``workload.STT_FINAL_DELAY_S`` later (no interims).
* ``async aclose()`` -- close the session the framework's normal way.

The fakes must follow ``workload``: energy VAD via ``workload.is_speech`` on
20 ms windows (10 frames to start, 10 to stop); LLM waits ``LLM_TTFT_S`` then
emits ``REPLY_TOKENS`` one per ``LLM_TOKEN_S`` (token *i* at TTFT + (i+1) x
10 ms), except that when the last context item is the user saying
``TOOL_TEXT`` it emits one ``TOOL_NAME`` call (no text) after TTFT; the tool
returns ``TOOL_RESULT``; TTS waits ``TTS_TTFB_S`` per request then returns
``tts_audio(text)`` at once.
"""
