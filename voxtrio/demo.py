"""The demo (``voxtrio demo``): a spoken conversation through the offline pipeline.

A simulated caller says five lines, made with the Piper voice before the call;
each goes through Silero VAD -> Whisper tiny.en -> SmolLM2 (with the example
agent's tools and hand-off) -> Piper, with no network and no API key. It prints
the live transcript with the timing of each turn (end of the caller's speech to
the agent's first audio, and its parts), and writes the agent's audio, the
whole call in stereo and a JSON transcript to ``--out``.

It runs in real time (the call takes as long as it would on the phone); with
``--fast``, on :class:`~voxtrio.clock.FastForwardClock`, which skips the idle
waits but not the model work, so the timings are the same.
``voxtrio demo --scripted`` is the model-free demo on scripted providers.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

import trio

T = TypeVar("T")

CALLER_LINES = (
    "What is the weather like in Lisbon today?",
    "And how is the weather in Oslo?",
    "What is the best season to visit Tokyo?",
    "Can you help me pack my suitcase?",
    "What should I bring for a rainy week?",
)


def find_example_agent(path: str | None) -> Path:
    if path is not None:
        return Path(path)
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        candidate = base / "examples" / "weather_agent.py"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "examples/weather_agent.py not found; run from the voxtrio checkout or pass --agent PATH"
    )


def load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def with_progress(label: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a thread while a line shows the seconds going by."""
    import threading

    result: list[Any] = []

    def target() -> None:
        try:
            result.append(("ok", work()))
        except BaseException as error:  # re-raised on the main thread
            result.append(("error", error))

    started = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    live = sys.stdout.isatty()
    while worker.is_alive():
        worker.join(0.2)
        if live:
            print(f"\r  {label:<44} {time.perf_counter() - started:5.1f} s", end="", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\r  {label:<44} {elapsed:5.1f} s", flush=True)
    kind, value = result[0]
    if kind == "error":
        raise value
    return value


def build_pipeline(routes: Any) -> dict[str, Any]:
    """Construct and load the offline providers, showing progress."""
    from .providers.piper_tts import PiperTTS
    from .providers.silero_vad import SileroVAD
    from .providers.smollm_llm import SmolLM
    from .providers.whisper_stt import WhisperSTT

    print("loading the offline models (all from installed packages):")
    vad = SileroVAD(min_silence_duration=0.4)
    with_progress("Silero VAD v6 (onnxruntime)", vad.load)
    stt = WhisperSTT(window=10.0)
    with_progress("Whisper tiny.en (faster-whisper, int8)", stt.load)
    llm = SmolLM(routes=routes)
    with_progress("SmolLM2-135M-Instruct (CTranslate2, int8)", llm.load)
    tts = PiperTTS()
    with_progress("Piper voice en_US-joe-medium", tts.load)
    return {"vad": vad, "stt": stt, "llm": llm, "tts": tts}


class LivePrinter:
    """Prints the ConversationLog's entries and turn timings as they happen."""

    def __init__(self) -> None:
        self.turn = 0

    def __call__(self, kind: str, entry: dict[str, Any]) -> None:
        if kind == "user":
            self.turn += 1
            print(f"[{entry['t']:6.2f}s] caller: {entry['text']}", flush=True)
        elif kind == "assistant":
            cut = " [interrupted]" if entry["interrupted"] else ""
            print(f"[{entry['t']:6.2f}s] agent:  {entry['text']}{cut}", flush=True)
        elif kind == "tool":
            print(f"[{entry['t']:6.2f}s]   tool {entry['name']}({entry['arguments']}) -> {entry['output']!r}", flush=True)
        elif kind == "handoff" and entry["from"] is not None:
            print(f"[{entry['t']:6.2f}s]   hand-off: {entry['from']} -> {entry['to']}", flush=True)
        elif kind == "timing":
            print(f"          {describe_timing(entry)}", flush=True)


def describe_timing(entry: dict[str, Any]) -> str:
    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    return (
        f"end of speech -> first audio {ms(entry['first_audio'])}: end of utterance {ms(entry['end_of_utterance'])} "
        f"(stt {ms(entry['stt'])}), llm {ms(entry['llm'])}, tts {ms(entry['tts'])}"
    )


def run(args: argparse.Namespace) -> int:
    from .clock import FastForwardClock
    from .providers.packaged_models import MissingLocalPackage
    from .session import AgentSession
    from .testing.caller import SimulatedCaller

    print("voxtrio demo: a spoken conversation, fully offline (VAD -> STT -> LLM -> TTS)")
    try:
        example = load_module(find_example_agent(args.agent))
        pipeline = build_pipeline(example.ROUTES)
    except MissingLocalPackage as error:
        print(f"\nerror: {error}\n(without the models: voxtrio demo --scripted)", file=sys.stderr)
        return 1
    except FileNotFoundError as error:
        print(f"\nerror: {error}", file=sys.stderr)
        return 1
    tts = pipeline["tts"]
    from .providers.piper_tts import PiperTTS

    # The caller's voice: the same voice without its random variation, so every run hears the same lines.
    caller_voice = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.05)
    lines = with_progress("the caller's lines (Piper)", lambda: [caller_voice.render(line) for line in CALLER_LINES])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    caller = SimulatedCaller(
        lines,
        sample_rate=caller_voice.sample_rate,
        pause=1.0,
        output_path=out / "agent.wav",
        conversation_path=out / "conversation.wav",
        transcript_path=out / "transcript.json",
    )
    caller.log.listen(LivePrinter())
    session = AgentSession(min_endpointing_delay=0.5, **pipeline)
    mode = "as fast as the models allow" if args.fast else "in real time"
    print(f"\nthe call ({mode}; times are seconds since it started):")
    clock = FastForwardClock() if args.fast else None
    started = time.perf_counter()
    try:
        trio.run(session.main, example.WeatherDesk(), caller, clock=clock)
    finally:
        pipeline["llm"].close()
    wall = time.perf_counter() - started
    summary = caller.log.summary()
    print(f"\ndone: {summary['turns']} turns in {wall:.1f} s of wall time")
    for stage in ("first_audio", "end_of_utterance", "stt", "llm", "tts"):
        if stage in summary:
            figures = summary[stage]
            print(f"  {stage.replace('_', ' '):<18} median {figures['median'] * 1000:5.0f} ms   max {figures['max'] * 1000:5.0f} ms")
    print(f"\nfiles in {out}/:")
    print("  conversation.wav  the call in stereo: caller on the left, agent on the right")
    print("  agent.wav         the agent's audio on the call's timeline")
    print("  transcript.json   who said what when, tool calls, timings per turn")
    print(f"play it with:  aplay {out / 'conversation.wav'}   (or any audio player)")
    return 0
