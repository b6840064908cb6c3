"""One scripted call: the user's side as a state machine, plus what it measures.

The user reacts to what the agent does, so the script cannot be a fixed
timeline: it is driven by two kinds of callbacks.

* ``tick(slot, now)``: the global ticker asks for this call's next 20 ms input
  frame. ``slot`` is the frame's place on the absolute schedule, ``now`` the
  time it is actually fed (later than ``slot`` if the event loop lagged).
  Decisions use ``slot`` so they do not depend on lag; recorded speech times
  use ``now`` because that is when the framework really got the audio.
* ``audio_written(now, samples)`` / ``audio_cleared(now)``: the sink saw agent
  audio arrive or be flushed away. They advance the script (reply started,
  reply fully played) and feed the output metrics.

No event loop and no clock live here, so an asyncio driver and a trio driver
share it unchanged, and it can be unit-tested with made-up times.

Which reply a frame belongs to: audio that arrives after ``speech_end[k]``
belongs to reply *k* until ``speech_end[k+1]``, so leftovers of an
interrupted reply that arrive while the user barges in are charged to the
interrupted reply. A reply is complete once its full length
(``workload.REPLY_SAMPLES``) has arrived; the harness knows that length
because it owns the fake TTS's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import workload as W
from .playout import Playout


@dataclass(frozen=True)
class ScriptSpec:
    """Shape of a call. FULL is "scripted call v1"; the others are shortened."""

    name: str
    turns: int = 6
    speech_frames: int = 100  # 2.0 s
    tool_turn: int | None = 2
    barge_in_turn: int | None = 4  # this turn barges into the previous reply
    lead_in_s: float = 1.0
    think_s: float = 1.0  # silence after a reply has fully played
    barge_in_after_s: float = 1.0  # after the first audio of the reply it cuts
    cap_s: float = W.CALL_CAP_S

    def transcript(self, turn: int) -> str:
        return W.TOOL_TEXT if turn == self.tool_turn else W.OTHER_TEXTS[turn]


FULL = ScriptSpec("full")
# Warm-up (and --quick): 3 short turns with the tool call and an interruption.
WARMUP = ScriptSpec("warmup", turns=3, speech_frames=50, tool_turn=0, barge_in_turn=2)
QUICK = ScriptSpec("quick", turns=3, speech_frames=50, tool_turn=0, barge_in_turn=2)

LEAD_IN, SPEAKING, WAITING, DONE = "lead_in", "speaking", "waiting", "done"


@dataclass
class Reply:
    first_at: float | None = None  # arrival of its first audio frame at the sink
    samples: int = 0
    complete_at: float | None = None  # playout end once all of it has arrived
    cleared: bool = False


@dataclass
class Call:
    spec: ScriptSpec
    index: int = 0
    # --- script state ---
    phase: str = LEAD_IN
    turn: int = -1
    fed: int = 0  # speech frames fed in the current turn
    next_turn_at: float | None = None
    answering: int = -1  # reply that incoming agent audio belongs to
    t0: float | None = None
    done_at: float | None = None
    aborted: bool = False
    # --- records ---
    speech_start: list[float | None] = field(init=False)
    speech_end: list[float | None] = field(init=False)
    replies: list[Reply] = field(init=False)
    playout: Playout = field(init=False)
    lateness: list[float] = field(default_factory=list)  # per reply frame after the first
    underrun_s: float = 0.0
    stop_at: float | None = None  # when the interrupted reply stopped being audible
    frames_out: int = 0
    leaked_frames: int = 0  # reply audio that arrived after the reply was cleared
    unexpected_frames: int = 0  # agent audio before the user said anything
    extra_samples: int = 0  # audio beyond the TTS output of a reply (framework padding)
    post_call_frames: int = 0
    clears: int = 0  # clears that cut audible audio
    tts_requests: int = 0
    tts_mismatches: int = 0  # request text that is not one of the 3 sentences

    def __post_init__(self) -> None:
        n = self.spec.turns
        self.speech_start = [None] * n
        self.speech_end = [None] * n
        self.replies = [Reply() for _ in range(n)]
        self.playout = Playout(W.SINK_BUFFER_S)

    # ------------------------------------------------------------------ input
    def tick(self, slot: float, now: float) -> tuple[bytes, str | None] | None:
        """Next input frame, and the transcript if it ends the user's speech.

        Returns None once the call is over (done or aborted); the driver then
        closes the session. The transcript is for the fake STT, which must
        emit it ``STT_FINAL_DELAY_S`` after it is returned here.
        """
        if self.phase == DONE:
            return None
        if self.t0 is None:
            self.t0 = slot
        if slot - self.t0 > self.spec.cap_s:
            self.aborted = True
            return self._finish(now)
        if self.phase == LEAD_IN and slot >= self.t0 + self.spec.lead_in_s:
            self._start_turn(0)
        elif self.phase == WAITING and self.next_turn_at is not None and slot >= self.next_turn_at:
            if self.turn + 1 == self.spec.turns:
                return self._finish(now)
            self._start_turn(self.turn + 1)
        if self.phase != SPEAKING:
            return W.SILENCE_FRAME, None
        i = self.fed
        self.fed += 1
        if i == 0:
            self.speech_start[self.turn] = now
        if self.fed < self.spec.speech_frames:
            return W.SPEECH_FRAMES[i], None
        self._end_speech(now)
        return W.SPEECH_FRAMES[i], self.spec.transcript(self.turn)

    def _start_turn(self, k: int) -> None:
        self.turn, self.fed, self.phase, self.next_turn_at = k, 0, SPEAKING, None

    def _end_speech(self, now: float) -> None:
        k = self.turn
        self.speech_end[k] = now
        self.phase = WAITING
        if k == self.spec.barge_in_turn and self.replies[k - 1].first_at is not None:
            # The user has finished barging in: whatever is still queued of the
            # interrupted reply (nothing, if it was cleared) is its last audio.
            self.stop_at = self.playout.end
        self.answering = k

    def _finish(self, now: float) -> None:
        self.phase, self.done_at = DONE, now

    # ----------------------------------------------------------------- output
    def audio_written(self, now: float, samples: int) -> float:
        """Account one frame written to the sink; returns when the write may return."""
        w = self.playout.write(now, samples / W.OUT_RATE)
        if self.phase == DONE:
            self.post_call_frames += 1
            return w.release_at
        k = self.answering
        if k < 0:
            self.unexpected_frames += 1
            return w.release_at
        r = self.replies[k]
        self.frames_out += 1
        if r.first_at is None:
            r.first_at = now
            if k + 1 == self.spec.barge_in_turn:
                self.next_turn_at = now + self.spec.barge_in_after_s
        elif r.cleared:
            self.leaked_frames += 1
        else:
            self.lateness.append(w.gap_s)
            self.underrun_s += w.gap_s
        r.samples += samples
        if r.complete_at is None and r.samples >= W.REPLY_SAMPLES:
            r.complete_at = self.playout.end
            self.extra_samples += r.samples - W.REPLY_SAMPLES
        elif r.complete_at is not None:
            self.extra_samples += samples
        if r.complete_at is not None and k == self.turn and k + 1 != self.spec.barge_in_turn:
            # "played everything it was given + think": audio the framework
            # adds after the TTS output (LiveKit's 10 ms end-of-segment
            # markers) pushes the next turn back too.
            self.next_turn_at = self.playout.end + self.spec.think_s
        return w.release_at

    def audio_cleared(self, now: float) -> None:
        """Playback was flushed. Pipecat does this at every user-turn start, so
        a clear with nothing queued is not counted and does not mark the reply."""
        if self.playout.clear(now) <= 0.0:
            return
        self.clears += 1
        if self.answering >= 0:
            self.replies[self.answering].cleared = True

    def tts_request(self, text: str) -> None:
        """The fake TTS reports each request, to check the framework's sentence split."""
        self.tts_requests += 1
        if text.strip() not in W.SENTENCES:
            self.tts_mismatches += 1

    # ---------------------------------------------------------------- results
    @property
    def duration_s(self) -> float:
        return (self.done_at or 0.0) - (self.t0 or 0.0)

    def turn_latencies(self) -> list[tuple[int, float]]:
        """(turn, latency) for every answered turn."""
        return [
            (k, r.first_at - self.speech_end[k])
            for k, r in enumerate(self.replies)
            if r.first_at is not None and self.speech_end[k] is not None
        ]

    def turn_overheads(self) -> list[float]:
        out = []
        for k, lat in self.turn_latencies():
            path = W.TOOL_CRITICAL_PATH_S if k == self.spec.tool_turn else W.CRITICAL_PATH_S
            out.append(lat - W.ENDPOINTING_S - path)
        return out

    def stop_delay(self) -> float | None:
        b = self.spec.barge_in_turn
        if b is None or self.stop_at is None:
            return None
        return self.stop_at - self.speech_start[b] - W.MIN_INTERRUPTION_S
