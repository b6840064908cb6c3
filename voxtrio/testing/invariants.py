"""Invariants every conversation must keep, checked on a watched run.

:func:`observe` plays a scenario on trio's ``MockClock`` the way
``voxtrio scenario run`` does, and keeps what the timeline alone cannot show:
the raw events with exact times, every :class:`SpeechHandle`, what the output
device really played (:meth:`ScriptedAudioOutput.playing_intervals`), the
API calls the scenario made and what they returned, whether ``session.main``
returned on its own and whether any task it started outlived it.

:func:`check_invariants` runs every check of :data:`INVARIANTS` on an
observation and returns the violations; :func:`check_conversation` does both,
replays the conversation to check that it is deterministic, and raises
:class:`InvariantViolation` (after writing the failing scenario to a file that
``voxtrio scenario run`` replays) when anything is wrong::

    from voxtrio.testing.invariants import check_conversation
    check_conversation(scenario_data)        # raises InvariantViolation

The invariants (each a plain function of an :class:`Observation`, which a
test can also call on its own):

- ``check_main_returns``: session.main returns on its own without an error,
  no task it started outlives it, awaited calls and returned futures resolve;
- ``check_close``: one ``close`` event, the last, with a valid reason (``error``
  only after an unrecoverable error); no agent audio after it;
- ``check_close_timeout``: the close ends within ``close_timeout`` of the request;
- ``check_function_calls``: each call in the history has exactly one output
  after it, no output lacks its call, ``function_tools_executed`` reported each
  pair, no tool that began to run is missing from the history;
- ``check_state_transitions``: agent and user states follow the tables of
  docs/behaviour.md, each change continuing from the last;
- ``check_speaking_means_audio``: ``speaking`` only while audio plays, never
  ``listening`` while it plays;
- ``check_no_audio_over_user``: no interruptible speech starts while the user
  speaks or plays on over the user once it can be cut;
- ``check_no_resume_over_user``: a paused reply never resumes while the user
  is making sound;
- ``check_speech_handles``: every handle done with one terminal record that the
  history reflects;
- ``check_history_order``: strictly increasing sequence numbers, no item twice;
- ``check_user_turns``: each user turn once, in the order it was said;
- ``check_failures_reported``: every crash of a provider or transport and
  everything they sent that their protocol does not allow is exactly one
  ``error`` event naming its source, and no step of the runtime failed on its own;
- ``check_misuse_refused``: every deliberate misuse of the API (an action
  marked ``raises``) was refused at the call with that error;

and, in :func:`check_conversation`, determinism (a replay is byte-identical).
"""

from __future__ import annotations

import collections
import json
import math
import os
import pathlib
import re
from typing import Any, Callable, Iterable, Mapping, Sequence

import attrs
import trio
import trio.testing

from ..agent import Agent
from ..events import Event
from ..options import SessionOptions
from ..session import AgentSession
from ..speech import SpeechHandle
from .scenario import PlayObserver, Scenario, load_scenario, play, seeded_trio_scheduler
from .scripted import ScriptedAudioOutput, ScriptedTransport
from .shrinking import reduce_scenario

CLOSE_REASONS = {"error", "job_shutdown", "participant_disconnected", "user_initiated", "task_completed"}

# The agent and user state machines of docs/behaviour.md, "States" (the silent
# resets at close emit nothing).
AGENT_TRANSITIONS = {
    ("initializing", "listening"),
    ("listening", "thinking"),
    ("listening", "speaking"),
    ("thinking", "speaking"),
    ("thinking", "listening"),
    ("speaking", "listening"),
    ("speaking", "thinking"),
}
USER_TRANSITIONS = {
    ("listening", "speaking"),
    ("away", "speaking"),
    ("speaking", "listening"),
    ("listening", "away"),
    ("away", "listening"),
}

# Slack for comparing audio intervals with state changes: one TTS chunk.
AUDIO_SLACK = 0.011
# How long a run may go on after its last scripted moment before it counts as hung.
DEFAULT_TIME_LIMIT = 120.0
# Task steps at one virtual instant after which a run is declared livelocked.
# A busy 60 s conversation takes a few thousand steps in its busiest instant.
LIVELOCK_STEPS = 200_000


@attrs.frozen
class Violation:
    invariant: str
    message: str

    def __str__(self) -> str:
        return f"[{self.invariant}] {self.message}"


class InvariantViolation(AssertionError):
    """A conversation broke invariants. ``path`` is the scenario file written for it."""

    def __init__(self, violations: Sequence[Violation], path: pathlib.Path | None = None) -> None:
        self.violations = list(violations)
        self.path = path
        lines = [str(v) for v in self.violations]
        if path is not None:
            lines.append(f"replay it with: voxtrio scenario run {path}")
        super().__init__("\n".join(lines))


@attrs.define(eq=False)
class CallRecord:
    """One API call the scenario made (an action, or a hook or tool step)."""

    call: str
    args: Mapping[str, Any]
    at: float
    result: Any = None
    error: BaseException | None = None


@attrs.define(eq=False)
class Observation:
    """Everything one watched run of a scenario showed."""

    scenario: Scenario
    lines: list[dict[str, Any]] = attrs.Factory(list)
    events: list[Event] = attrs.Factory(list)
    origin: float = 0.0
    session: AgentSession | None = None
    transport: ScriptedTransport | None = None
    output: ScriptedAudioOutput | None = None
    calls: list[CallRecord] = attrs.Factory(list)
    main_returned: bool = False
    main_error: BaseException | None = None
    gave_up: bool = False
    livelocked_at: float | None = None
    time_limit: float | None = None
    pending_waits: list[str] = attrs.Factory(list)
    tools_started: list[str] = attrs.Factory(list)
    leaked_tasks: list[str] = attrs.Factory(list)

    # -- helpers for checks ------------------------------------------------------

    def of(self, event_type: str) -> list[Event]:
        return [event for event in self.events if event.type == event_type]

    @property
    def handles(self) -> list[SpeechHandle]:
        return [event.speech_handle for event in self.of("speech_created")]

    @property
    def close_events(self) -> list[Event]:
        return self.of("close")

    def t(self, when: float) -> float:
        """Scenario time (seconds since t = 0) of a trio time, rounded like the timeline."""
        return round(when - self.origin, 3)


class _TaskTracker(trio.abc.Instrument):
    """Every task started, directly or not, under the task running session.main."""

    def __init__(self) -> None:
        self.root: trio.lowlevel.Task | None = None
        self.alive: dict[trio.lowlevel.Task, str] = {}

    def _under_root(self, task: trio.lowlevel.Task | None) -> bool:
        while task is not None:
            if task is self.root or task in self.alive:
                return True
            nursery = task.parent_nursery
            task = nursery.parent_task if nursery is not None else None
        return False

    def task_spawned(self, task: trio.lowlevel.Task) -> None:
        if self.root is None:
            return
        try:
            spawner: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        except RuntimeError:
            spawner = None
        if self._under_root(spawner) or self._under_root(task):
            self.alive[task] = task.name

    def task_exited(self, task: trio.lowlevel.Task) -> None:
        self.alive.pop(task, None)


class _LivelockGuard(trio.abc.Instrument):
    """Stops a run whose tasks keep running without virtual time moving on (a
    loop of checkpoints that never sleeps): on a MockClock that run would never
    reach its time limit."""

    def __init__(self, clock: trio.testing.MockClock, scope: trio.CancelScope, steps: int) -> None:
        self.clock = clock
        self.scope = scope
        self.steps = steps
        self.now = -math.inf
        self.count = 0
        self.stuck_at: float | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = self.clock.current_time()
        if now != self.now:
            self.now, self.count = now, 0
            return
        self.count += 1
        if self.count == self.steps:
            self.stuck_at = now
            self.scope.cancel()


class _Watcher(PlayObserver):
    def __init__(self, observation: Observation, tracker: _TaskTracker, time_limit: float | None) -> None:
        self.obs = observation
        self.tracker = tracker
        self.time_limit = time_limit
        self.waiting: list[str] = []

    def on_session(self, session: AgentSession, transport: ScriptedTransport) -> None:
        self.obs.session = session
        self.obs.transport = transport
        self.obs.output = transport.audio_output
        session.on("*", self.obs.events.append)
        self.tracker.root = trio.lowlevel.current_task()

    def on_start(self, session: AgentSession, transport: ScriptedTransport, origin: float) -> None:
        self.obs.origin = origin

    def on_call(self, call: str, args: Mapping[str, Any], result: Any) -> None:
        self.obs.calls.append(CallRecord(call, dict(args), trio.current_time(), result=result))

    def on_call_failed(self, call: str, args: Mapping[str, Any], error: BaseException) -> None:
        self.obs.calls.append(CallRecord(call, dict(args), trio.current_time(), error=error))

    def on_tool_started(self, name: str, arguments: Mapping[str, Any]) -> None:
        self.obs.tools_started.append(name)

    def on_wait(self, call: str, waiting: bool) -> None:
        if waiting:
            self.waiting.append(call)
        else:
            self.waiting.remove(call)

    def on_main_returned(self, error: BaseException | None) -> None:
        self.obs.main_returned = True
        self.obs.main_error = error
        self.obs.leaked_tasks = sorted(self.tracker.alive.values())
        self.tracker.root = None

    async def settle(self) -> None:
        # Whatever the application awaited is answered once main has returned;
        # a moment of virtual time is plenty for it to wake up.
        with trio.move_on_after(1.0):
            while self.waiting:
                await trio.sleep(0.01)
        self.obs.pending_waits = list(self.waiting)

    def on_gave_up(self) -> None:
        self.obs.gave_up = True


def observe(
    scenario: Scenario | Mapping[str, Any],
    *,
    seed: int = 0,
    agents: Mapping[str, Callable[[], Agent]] | None = None,
    time_limit: float | None = DEFAULT_TIME_LIMIT,
) -> Observation:
    """Play a scenario in a fresh trio run on a MockClock and watch it.

    ``time_limit``: virtual seconds after the script's last moment after which a
    session that has not closed is declared hung (and cancelled).
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    observation = Observation(scenario=scenario, time_limit=time_limit)
    tracker = _TaskTracker()
    watcher = _Watcher(observation, tracker, time_limit)

    clock = trio.testing.MockClock(autojump_threshold=0)
    stop = trio.CancelScope()
    guard = _LivelockGuard(clock, stop, LIVELOCK_STEPS)

    async def run() -> list[dict[str, Any]]:
        trio.lowlevel.add_instrument(tracker)
        trio.lowlevel.add_instrument(guard)
        try:
            with stop:
                return await play(scenario, observer=watcher, agents=agents)
            return []
        finally:
            trio.lowlevel.remove_instrument(guard)
            trio.lowlevel.remove_instrument(tracker)

    with seeded_trio_scheduler(seed):
        observation.lines = trio.run(run, clock=clock)
    observation.livelocked_at = guard.stuck_at
    return observation


# ---------------------------------------------------------------------------
# the invariants
# ---------------------------------------------------------------------------


def _intervals(
    changes: Iterable[tuple[float, str]], wanted: str, until: float
) -> list[tuple[float, float]]:
    """The intervals during which a state (from its change events) was ``wanted``."""
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for when, state in changes:
        if state == wanted and since is None:
            since = when
        elif state != wanted and since is not None:
            spans.append((since, when))
            since = None
    if since is not None:
        spans.append((since, until))
    return spans


def _overlap(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for s1, e1 in a:
        for s2, e2 in b:
            start, end = max(s1, s2), min(e1, e2)
            if end > start:
                out.append((start, end))
    return out


def _minus(a: Sequence[tuple[float, float]], b: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of intervals ``a`` not covered by intervals ``b`` (``b`` merged and sorted)."""
    out = []
    for start, end in a:
        cursor = start
        for s, e in b:
            if e <= cursor or s >= end:
                continue
            if s > cursor:
                out.append((cursor, s))
            cursor = max(cursor, e)
        if cursor < end:
            out.append((cursor, end))
    return out


def check_main_returns(obs: Observation) -> list[Violation]:
    """session.main returns on its own, without an error, once the session closed;
    nothing it started is still running; what the application awaited returned."""
    found = []
    if obs.livelocked_at is not None:
        found.append(
            Violation(
                "main_returns",
                f"livelock: {LIVELOCK_STEPS} task steps at t={obs.livelocked_at:g} without virtual time moving on",
            )
        )
    elif obs.gave_up:
        found.append(
            Violation(
                "main_returns",
                "the session did not close (or session.main did not return) within "
                f"{obs.time_limit:g} s of virtual time after the script's last moment",
            )
        )
    elif not obs.main_returned:
        found.append(Violation("main_returns", "session.main did not return after the close event"))
    if obs.main_error is not None:
        found.append(
            Violation("main_returns", f"session.main raised {type(obs.main_error).__name__}: {obs.main_error}")
        )
    if obs.leaked_tasks:
        found.append(Violation("main_returns", f"tasks outlived session.main: {obs.leaked_tasks}"))
    if obs.pending_waits:
        found.append(Violation("main_returns", f"awaited calls never returned after the close: {obs.pending_waits}"))
    for record in obs.calls:
        future = record.result
        if hasattr(future, "done") and not isinstance(future, SpeechHandle) and not future.done():
            found.append(
                Violation(
                    "main_returns",
                    f"the future returned by {record.call}() at t={obs.t(record.at)} was never resolved",
                )
            )
    return found


def check_close(obs: Observation) -> list[Violation]:
    """``close`` is emitted exactly once, as the last event, with a known reason;
    ``error`` only after an unrecoverable error; no audio is written after it."""
    found = []
    closes = obs.close_events
    if len(closes) != 1:
        return [Violation("close_once", f"expected exactly one close event, got {len(closes)}")]
    close = closes[0]
    if obs.events[-1] is not close:
        after = [e.type for e in obs.events[obs.events.index(close) + 1 :]]
        found.append(Violation("close_once", f"events after close: {after}"))
    reason = getattr(close, "reason", None)
    if reason not in CLOSE_REASONS:
        found.append(Violation("close_once", f"close has no valid reason: {reason!r}"))
    if (getattr(close, "error", None) or "").split(":")[0] in ("ExceptionGroup", "BaseExceptionGroup"):
        found.append(Violation("close_once", f"the close names an exception group, not its cause: {close.error}"))
    if reason == "error":
        fatal = [e for e in obs.of("error") if not e.recoverable]
        if not fatal and getattr(close, "error", None) is None:
            found.append(Violation("close_once", "closed with reason 'error' without any unrecoverable error"))
    if obs.output is not None:
        late = [t for kind, t, _ in obs.output.log if kind == "write" and t > close.created_at + 1e-9]
        if late:
            found.append(Violation("close_once", f"agent audio written after close, at t={obs.t(late[0])}"))
    return found


def check_close_timeout(obs: Observation) -> list[Violation]:
    """The close finishes within ``close_timeout`` of being asked for."""
    closes = obs.close_events
    if len(closes) != 1 or obs.session is None:
        return []
    asked = obs.session._state.close_requested_at
    if asked is None:
        if closes[0].reason in ("user_initiated", "error", "participant_disconnected"):
            return [Violation("close_timeout", "the session closed but no close request was recorded")]
        return []
    took = closes[0].created_at - asked
    limit = _close_timeout_when_asked(obs, asked)
    if took > limit + 1e-6:
        return [
            Violation(
                "close_timeout",
                f"close asked at t={obs.t(asked)} took {took:.3f} s, more than close_timeout={limit:g} s",
            )
        ]
    return []


def _close_timeout_when_asked(obs: Observation, asked: float) -> float:
    """The close_timeout in force when the close was asked for: the scenario's,
    as changed by the update_options calls made before the close request."""
    limit = obs.scenario.options.get("close_timeout", attrs.fields(SessionOptions).close_timeout.default)
    for record in obs.calls:  # in the order they were made
        if record.at > asked + 1e-9 or (record.call in ("shutdown", "aclose") and record.at >= asked - 1e-9):
            break
        if record.call == "update_options" and record.error is None and "close_timeout" in record.args:
            limit = record.args["close_timeout"]
    return float(limit)


def check_function_calls(obs: Observation) -> list[Violation]:
    """Every function call in the history has exactly one output after it, no
    output lacks its call, function_tools_executed reported each pair, and no
    tool that began to run is missing from the history (abandoned silently)."""
    if obs.session is None:
        return []
    found = []
    in_history = collections.Counter(
        item.name for item in obs.session.history.items if item.type == "function_call"
    )
    for name, started in sorted(collections.Counter(obs.tools_started).items()):
        if started > in_history[name]:
            found.append(
                Violation(
                    "function_calls",
                    f"tool {name!r} began to run {started} time(s) but the history has "
                    f"{in_history[name]} call(s) of it",
                )
            )
    waiting: dict[str, int] = {}
    calls: list[str] = []
    for item in obs.session.history.items:
        if item.type == "function_call":
            waiting[item.call_id] = waiting.get(item.call_id, 0) + 1
            calls.append(item.call_id)
        elif item.type == "function_call_output":
            if waiting.get(item.call_id, 0) == 0:
                found.append(
                    Violation("function_calls", f"output for call {item.call_id!r} has no call before it in history")
                )
            else:
                waiting[item.call_id] -= 1
    for call_id, count in waiting.items():
        if count:
            found.append(Violation("function_calls", f"call {call_id!r} has no output in history ({count} missing)"))
    reported: list[str] = []
    for event in obs.of("function_tools_executed"):
        call_ids = sorted(c.call_id for c in event.function_calls)
        output_ids = sorted(o.call_id for o in event.function_call_outputs)
        if call_ids != output_ids:
            found.append(
                Violation(
                    "function_calls",
                    f"function_tools_executed at t={obs.t(event.created_at)} pairs calls {call_ids} "
                    f"with outputs {output_ids}",
                )
            )
        reported.extend(call_ids)
    if sorted(reported) != sorted(calls):
        found.append(
            Violation(
                "function_calls",
                f"calls in history {sorted(calls)} differ from calls reported by "
                f"function_tools_executed {sorted(reported)}",
            )
        )
    return found


def _check_machine(obs: Observation, event_type: str, first: str, allowed: set[tuple[str, str]]) -> list[Violation]:
    found = []
    state = first
    for event in obs.of(event_type):
        old, new = event.old_state, event.new_state
        where = f"{event_type} at t={obs.t(event.created_at)}"
        if old != state:
            found.append(Violation("state_transitions", f"{where} says {old}->{new} but the state was {state}"))
        if (old, new) not in allowed:
            found.append(Violation("state_transitions", f"{where}: {old}->{new} is not a transition of docs/behaviour.md"))
        state = new
    return found


def check_state_transitions(obs: Observation) -> list[Violation]:
    """Agent and user states only take the transitions of docs/behaviour.md, "States"."""
    return _check_machine(obs, "agent_state_changed", "initializing", AGENT_TRANSITIONS) + _check_machine(
        obs, "user_state_changed", "listening", USER_TRANSITIONS
    )


def _state_changes(obs: Observation, event_type: str) -> list[tuple[float, str]]:
    return [(e.created_at, e.new_state) for e in obs.of(event_type)]


def _end_time(obs: Observation) -> float:
    return obs.events[-1].created_at if obs.events else obs.origin


def check_speaking_means_audio(obs: Observation) -> list[Violation]:
    """The agent is ``speaking`` only while its audio is playing, and never
    says it is ``listening`` while its audio plays. (Audio may play while it is
    ``thinking``: a reply scheduled behind a playing speech turns the state to
    ``thinking`` at once, as in the reference.)"""
    if obs.output is None:
        return []
    found = []
    playing = obs.output.playing_intervals()
    changes = _state_changes(obs, "agent_state_changed")
    speaking = _intervals(changes, "speaking", _end_time(obs))
    listening = _intervals(changes, "listening", _end_time(obs))
    for start, end in _minus(speaking, playing):
        if end - start > AUDIO_SLACK:
            found.append(
                Violation(
                    "speaking_means_audio",
                    f"the agent was 'speaking' with no audio playing from t={obs.t(start)} to t={obs.t(end)}",
                )
            )
    for start, end in _overlap(playing, listening):
        if end - start > AUDIO_SLACK:
            found.append(
                Violation(
                    "speaking_means_audio",
                    f"agent audio played while the agent was 'listening', from t={obs.t(start)} to t={obs.t(end)}",
                )
            )
    return found


def _options_seen(obs: Observation) -> list[Mapping[str, Any]]:
    """The option values in force at some point: the scenario's and every update."""
    seen: list[Mapping[str, Any]] = [obs.scenario.options]
    seen += [record.args for record in obs.calls if record.call == "update_options" and record.error is None]
    return seen


def _playouts(obs: Observation) -> dict[str, list[dict[str, Any]]]:
    """Per speech id, its playouts in order: started (or None), finished (or None)."""
    playouts: dict[str, list[dict[str, Any]]] = {}
    for event in obs.events:
        if event.type == "playback_started":
            playouts.setdefault(event.speech_id, []).append({"started": event, "finished": None})
        elif event.type == "playback_finished":
            runs = playouts.setdefault(event.speech_id, [])
            if runs and runs[-1]["finished"] is None:
                runs[-1]["finished"] = event
            else:
                runs.append({"started": None, "finished": event})
    return playouts


def check_no_audio_over_user(obs: Observation) -> list[Violation]:
    """No interruptible agent speech starts playing while the user is speaking
    (voiced, or paused for less than half the endpointing delay),
    and none keeps playing over the user once the interruption rules allow it
    to be cut (speech of ``min_interruption_duration``, heard by the VAD)."""
    if obs.output is None or obs.scenario.vad is None:
        return []
    found = []
    handles = {h.id: h for h in obs.handles}
    user_speaking = _intervals(_state_changes(obs, "user_state_changed"), "speaking", _end_time(obs))
    order = {id(event): index for index, event in enumerate(obs.events)}

    def user_state_before(event: Event) -> str:
        state = "listening"
        for other in obs.of("user_state_changed"):
            if order[id(other)] < order[id(event)]:
                state = other.new_state
        return state

    # The hold-off (docs/behaviour.md) ends when the user's pause reaches half the
    # endpointing delay, even mid-speech for the VAD: starting then is not talking over them.
    options = _options_seen(obs)
    delays = [float(o["min_endpointing_delay"]) for o in options if "min_endpointing_delay" in o]
    if "min_endpointing_delay" not in obs.scenario.options:
        delays.append(SessionOptions().min_endpointing_delay)
    pause_allowed = min(delays) / 2
    # A VAD hears speech begin (again) on its next update, not at once.
    step = obs.scenario.vad.get("min_speech_duration", 0.05)

    def user_talking(at: float) -> bool:
        t = at - obs.origin
        # (Exactly at the half-delay mark the VAD's sum of update intervals
        # decides which side a float lands on: either is right.)
        return any(s.start + step - 1e-6 <= t < s.end + pause_allowed - 1e-6 for s in obs.scenario.user)

    playouts = _playouts(obs)
    for speech_id, runs in playouts.items():
        handle = handles.get(speech_id)
        if handle is None or not handle.allow_interruptions:
            continue
        for run in runs:
            started = run["started"]
            if (
                started is not None
                and user_state_before(started) == "speaking"
                and user_talking(started.created_at)
            ):
                found.append(
                    Violation(
                        "no_audio_over_user",
                        f"{speech_id} started playing at t={obs.t(started.created_at)} while the user was speaking",
                    )
                )

    if any(o.get("allow_interruptions") is False for o in options):
        return found
    if any(o.get("turn_detection") in ("manual", "realtime_llm") for o in options):
        return found
    if any((o.get("min_interruption_words") or 0) > 0 for o in options):
        return found
    if any(o.get("aec_warmup_duration") for o in options):
        return found
    min_duration = max(float(o.get("min_interruption_duration", 0.5)) for o in options)
    grace = min_duration + 2 * step + AUDIO_SLACK
    playing = obs.output.playing_intervals()
    end_time = _end_time(obs)
    for speech in obs.scenario.user:
        window = (obs.origin + speech.start + grace, obs.origin + speech.end)
        if window[1] <= window[0]:
            continue
        if not any(s <= window[0] + 1e-9 and e > window[0] for s, e in user_speaking):
            continue  # the VAD did not hear this speech as speech at that point
        for speech_id, runs in playouts.items():
            handle = handles.get(speech_id)
            if handle is None or not handle.allow_interruptions:
                continue
            for run in runs:
                begin = (run["started"] or run["finished"]).created_at
                finish = run["finished"].created_at if run["finished"] is not None else end_time
                over = _overlap(_overlap(playing, [(begin, finish)]), [window])
                total = sum(e - s for s, e in over)
                if total > AUDIO_SLACK:
                    found.append(
                        Violation(
                            "no_audio_over_user",
                            f"{speech_id} (interruptible) played {total:.3f} s over the user speaking "
                            f"{speech.start:g}-{speech.end:g} s, from t={obs.t(over[0][0])}",
                        )
                    )
    return found


def check_no_resume_over_user(obs: Observation) -> list[Violation]:
    """A paused reply never resumes while the user is making sound: after a
    false-interruption pause (docs/behaviour.md) it resumes only once the user
    is quiet again. (Sound the VAD has not had an update to hear yet, and sound after the VAD
    failed, do not count: nothing could have known.)"""
    if obs.scenario.vad is None:
        return []
    step = obs.scenario.vad.get("min_speech_duration", 0.05)
    deaf_from = obs.scenario.vad_fail_at if obs.scenario.vad_fail_at is not None else math.inf
    found = []
    for event in obs.of("agent_false_interruption"):
        if not event.resumed:
            continue
        t = event.created_at - obs.origin
        for speech in obs.scenario.user:
            heard_from = speech.start + step
            if heard_from - 1e-6 <= t < speech.end - 1e-6 and heard_from < deaf_from:
                found.append(
                    Violation(
                        "no_resume_over_user",
                        f"the paused speech resumed at t={obs.t(event.created_at)} while the user was "
                        f"making sound ({speech.start:g}-{speech.end:g} s)",
                    )
                )
    return found


def _say_keeps_text(obs: Observation) -> dict[int, bool]:
    keeps = {}
    for record in obs.calls:
        if record.call == "say" and isinstance(record.result, SpeechHandle):
            keeps[id(record.result)] = record.args.get("add_to_chat_ctx", True)
    return keeps


def check_speech_handles(obs: Observation) -> list[Violation]:
    """Every SpeechHandle ends done with one terminal record (played, interrupted
    at a position, or discarded) and the history reflects it: an assistant
    message for each playout heard in full, ``interrupted=True`` exactly for the
    one cut, and none for audio never played."""
    if obs.session is None:
        return []
    found = []
    playouts = _playouts(obs)
    history_ids = {item.id for item in obs.session.history.items}
    owners: dict[str, str] = {}
    keeps = _say_keeps_text(obs)
    tts_failures = [e.created_at for e in obs.of("error") if e.source == "tts" and not e.recoverable]
    created_at = {e.speech_id: e.created_at for e in obs.of("speech_created")}
    for handle in obs.handles:
        name = handle.id
        if not handle.done():
            found.append(Violation("speech_handles", f"{name} never finished (not done after the close)"))
            continue
        runs = playouts.get(name, [])
        for index, run in enumerate(runs):
            if run["finished"] is None:
                found.append(Violation("speech_handles", f"{name}: a playout started but never finished"))
            elif run["started"] is None and run["finished"].position > 0:
                found.append(
                    Violation("speech_handles", f"{name}: playback_finished at a position without playback_started")
                )
        finished = [run["finished"] for run in runs if run["finished"] is not None]
        # A playout is cut by an interruption of its speech, or by its TTS failing
        # mid-way (then the speech goes on: a tool step may still follow).
        created = created_at.get(name, obs.origin)
        by_failure = [
            event.interrupted and any(created <= t <= event.created_at for t in tts_failures)
            for event in finished
        ]
        cut = [i for i, event in enumerate(finished) if event.interrupted and not by_failure[i]]
        if len(cut) > 1 or (cut and cut[0] != len(finished) - 1):
            found.append(Violation("speech_handles", f"{name}: played again after being interrupted"))
        if cut and not handle.interrupted:
            found.append(Violation("speech_handles", f"{name}: a playout was cut but the handle is not interrupted"))
        heard = [event for event in finished if event.position > 0]
        messages = [
            item for item in handle.chat_items if item.type == "message" and item.role == "assistant"
        ]
        for message in messages:
            if message.id not in history_ids:
                found.append(Violation("speech_handles", f"{name}: its message {message.content!r} is not in history"))
            if message.id in owners:
                found.append(Violation("speech_handles", f"message {message.content!r} claimed by two speeches"))
            owners[message.id] = name
        full = [event for event in heard if not event.interrupted]
        expect_full = len(full) if keeps.get(id(handle), True) else 0
        got_full = [m for m in messages if not m.interrupted]
        got_cut = [m for m in messages if m.interrupted]
        if len(got_full) != expect_full:
            found.append(
                Violation(
                    "speech_handles",
                    f"{name}: {len(full)} playout(s) heard in full but {len(got_full)} uninterrupted "
                    "assistant message(s) in history",
                )
            )
        cut_heard = [event for event in heard if event.interrupted]
        if len(got_cut) > len(cut_heard):
            found.append(
                Violation(
                    "speech_handles",
                    f"{name}: {len(got_cut)} interrupted assistant message(s) for {len(cut_heard)} cut playout(s)",
                )
            )
    for item in obs.session.history.items:
        if item.type == "message" and item.role == "assistant" and item.id not in owners:
            found.append(
                Violation("speech_handles", f"assistant message {item.content!r} in history belongs to no speech")
            )
    return found


def check_history_order(obs: Observation) -> list[Violation]:
    """History sequence numbers strictly increase, item ids are unique, every
    item is announced at most once, and event sequence numbers strictly increase."""
    found = []
    if obs.session is not None:
        items = obs.session.history.items
        for before, after in zip(items, items[1:]):
            if not before.seq < after.seq:
                found.append(
                    Violation(
                        "history_order",
                        f"history seq does not increase: {before.type} seq={before.seq} then "
                        f"{after.type} seq={after.seq}",
                    )
                )
        ids = [item.id for item in items]
        if len(ids) != len(set(ids)):
            found.append(Violation("history_order", "the same item appears twice in history"))
    announced = [event.item.id for event in obs.of("conversation_item_added")]
    if len(announced) != len(set(announced)):
        found.append(Violation("history_order", "conversation_item_added announced an item twice"))
    seqs = [event.seq for event in obs.events]
    if any(not a < b for a, b in zip(seqs, seqs[1:])):
        found.append(Violation("history_order", "event sequence numbers do not strictly increase"))
    return found


def _typed_inputs(obs: Observation) -> list[str]:
    texts = []
    for record in obs.calls:
        if record.call == "generate_reply" and record.error is None:
            value = record.args.get("user_input")
            if isinstance(value, str):
                texts.append(value)
    return texts


def check_user_turns(obs: Observation) -> list[Violation]:
    """Each committed user turn appears once, in the order it was said: the user
    messages that came from speech are disjoint runs of final transcripts, in
    the order of the transcripts."""
    if obs.session is None:
        return []
    found = []
    finals = [e.transcript for e in obs.of("user_input_transcribed") if e.is_final]
    typed = _typed_inputs(obs)
    used: set[int] = set()
    cursor = 0

    def runs(text: str) -> list[tuple[int, int]]:
        matching = []
        for start in range(len(finals)):
            for stop in range(start + 1, len(finals) + 1):
                joined = " ".join(finals[start:stop])
                if joined == text:
                    matching.append((start, stop))
                if len(joined) >= len(text):
                    break
        return matching

    for item in obs.session.history.items:
        if item.type != "message" or item.role != "user" or not item.content:
            continue
        if item.content in typed:
            typed.remove(item.content)
            continue
        candidates = runs(item.content)
        free = [(a, b) for a, b in candidates if not used.intersection(range(a, b))]
        ahead = [(a, b) for a, b in free if a >= cursor]
        if ahead:
            start, stop = ahead[0]
        elif free:
            start, stop = free[0]
            found.append(
                Violation(
                    "user_turns",
                    f"user message {item.content!r} comes after words said later "
                    "(the history does not keep the order of the user's turns)",
                )
            )
        else:
            why = "committed twice" if candidates else "text nobody said"
            found.append(Violation("user_turns", f"user message {item.content!r} is not a new run of final transcripts ({why})"))
            continue
        used.update(range(start, stop))
        cursor = max(cursor, stop)
    return found


def _fired(obs: Observation) -> list[tuple[str, Any]]:
    """What the scripted providers and transport raised or sent by their crash
    and junk faults, with the source that must report it."""
    if obs.session is None:
        return []
    found = []
    for source, part in (("llm", obs.session.llm), ("tts", obs.session.tts), ("stt", obs.session.stt), ("transport", obs.transport)):
        found += [(source, token) for token in getattr(part, "fired", ())]
    return found


def check_failures_reported(obs: Observation) -> list[Violation]:
    """Each crash of a provider or the transport, and each thing one sent that
    its protocol does not allow, is exactly one ``error`` event from its
    source; and no speech step failed on its own (a runtime bug)."""
    found = []
    errors = obs.of("error")
    for source, token in _fired(obs):
        reports = [
            e for e in errors
            if e.error is token or (getattr(e.error, "output", None) is token and token is not None)
        ]
        what = f"{type(token).__name__} {token!r}"
        if len(reports) != 1:
            found.append(
                Violation(
                    "failures_reported",
                    f"the {source}'s {what} appears in {len(reports)} error event(s), not one",
                )
            )
        elif reports[0].source != source:
            found.append(
                Violation("failures_reported", f"the {source}'s {what} is reported as from {reports[0].source}")
            )
    for event in errors:
        if event.source == "session" and not event.message.startswith("hand-off loop"):
            found.append(Violation("failures_reported", f"a step of the runtime failed: {event.message}"))
    return found


MISUSE_ERROR_TYPES = {"TypeError": TypeError, "ValueError": ValueError}


def check_misuse_refused(obs: Observation) -> list[Violation]:
    """An action marked as a misuse (``raises``) raised that error at the call,
    and changed nothing: no error event came of it."""
    found = []
    for action in obs.scenario.actions:
        expected = action.get("raises")
        if expected is None:
            continue
        at = obs.origin + action["at"]
        records = [
            r for r in obs.calls if r.call == action["call"] and dict(r.args) == action["args"] and abs(r.at - at) < 1e-9
        ]
        if not records:
            continue  # not made: the run ended first
        error = records[0].error
        if not isinstance(error, MISUSE_ERROR_TYPES[expected]):
            got = "nothing" if error is None else f"{type(error).__name__}: {error}"
            found.append(
                Violation(
                    "misuse_refused",
                    f"{action['call']}({action['args']}) at t={action['at']:g} should raise {expected}, raised {got}",
                )
            )
    return found


INVARIANTS: list[Callable[[Observation], list[Violation]]] = [
    check_main_returns,
    check_close,
    check_close_timeout,
    check_function_calls,
    check_state_transitions,
    check_speaking_means_audio,
    check_no_audio_over_user,
    check_no_resume_over_user,
    check_speech_handles,
    check_history_order,
    check_user_turns,
    check_failures_reported,
    check_misuse_refused,
]


def check_invariants(obs: Observation) -> list[Violation]:
    """Run every invariant of :data:`INVARIANTS` on one observation."""
    found: list[Violation] = []
    for check in INVARIANTS:
        found.extend(check(obs))
    return found


# ---------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------


def failure_directory() -> pathlib.Path:
    """Where failing scenarios are written: ``$VOXTRIO_FAILURE_DIR`` or ``./voxtrio-failures``."""
    return pathlib.Path(os.environ.get("VOXTRIO_FAILURE_DIR", "voxtrio-failures"))


def write_failure(
    data: Mapping[str, Any], violations: Sequence[Violation], *, name: str | None = None,
    directory: pathlib.Path | None = None,
) -> pathlib.Path:
    """Write a failing conversation as a scenario file ``voxtrio scenario run`` replays."""
    directory = directory or failure_directory()
    directory.mkdir(parents=True, exist_ok=True)
    name = name or str(data.get("name") or "failing_conversation")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    scenario = {"name": name, "description": "; ".join(str(v) for v in violations)}
    scenario.update({k: v for k, v in data.items() if k not in ("name", "description", "expect")})
    path = directory / f"{name}.json"
    path.write_text(json.dumps(scenario, indent=2) + "\n")
    return path


def _violations(
    scenario: Scenario | Mapping[str, Any],
    *,
    agents: Mapping[str, Callable[[], Agent]] | None,
    replay: bool,
    extra_checks: Sequence[Callable[[Observation], list[Violation]]],
) -> tuple[Observation, list[Violation]]:
    observation = observe(scenario, agents=agents)
    violations = check_invariants(observation)
    for check in extra_checks:
        violations.extend(check(observation))
    if replay and not violations:
        again = observe(observation.scenario, agents=agents)
        if json.dumps(observation.lines) != json.dumps(again.lines):
            index = next(
                (i for i, (a, b) in enumerate(zip(observation.lines, again.lines)) if a != b),
                min(len(observation.lines), len(again.lines)),
            )
            first = observation.lines[index] if index < len(observation.lines) else "(end)"
            second = again.lines[index] if index < len(again.lines) else "(end)"
            violations.append(
                Violation("determinism", f"the replay differs at line {index + 1}: {first} then {second}")
            )
    return observation, violations


# Conversations already shrunk (hypothesis replays a failing example at the end).
_shrunk: dict[str, tuple[dict[str, Any], list[Violation]]] = {}


def shrink_failure(
    data: Mapping[str, Any],
    violations: Sequence[Violation],
    *,
    agents: Mapping[str, Callable[[], Agent]] | None = None,
    budget: int = 300,
    extra_checks: Sequence[Callable[[Observation], list[Violation]]] = (),
) -> tuple[dict[str, Any], list[Violation]]:
    """The smallest scenario (see :mod:`voxtrio.testing.shrinking`) that still
    breaks one of the invariants ``violations`` names, with its violations."""
    key = json.dumps(data, sort_keys=True)
    if key in _shrunk:
        return _shrunk[key]
    names = {v.invariant for v in violations}
    replay = "determinism" in names

    def still_fails(candidate: dict[str, Any]) -> bool:
        try:
            _, found = _violations(candidate, agents=agents, replay=replay, extra_checks=extra_checks)
        except Exception:  # noqa: BLE001 - a candidate that cannot even run is not the same failure
            return False
        return bool(names & {v.invariant for v in found})

    reduced = reduce_scenario(dict(data), still_fails, budget=budget)
    _, found = _violations(reduced, agents=agents, replay=replay, extra_checks=extra_checks)
    result = (reduced, [v for v in found if v.invariant in names] or list(violations))
    _shrunk[key] = result
    return result


def check_conversation(
    data: Mapping[str, Any],
    *,
    agents: Mapping[str, Callable[[], Agent]] | None = None,
    replay: bool = True,
    shrink: bool = True,
    shrink_budget: int = 300,
    name: str | None = None,
    directory: pathlib.Path | None = None,
    extra_checks: Sequence[Callable[[Observation], list[Violation]]] = (),
) -> Observation:
    """Play a conversation, check every invariant, and check that a replay gives
    a byte-identical timeline.

    When anything is wrong, the conversation is shrunk (``shrink``; at most
    ``shrink_budget`` more runs) to the smallest scenario that still breaks the
    same invariant, written to ``directory`` (see :func:`failure_directory`) as
    a scenario file that ``voxtrio scenario run`` replays, and
    :class:`InvariantViolation` is raised naming the file. Returns the
    observation when all is well.

    Under hypothesis, leave its own ``shrink`` phase out (as the test profiles
    of voxtrio do): this shrinking works on the scenario itself, and running it
    for every example hypothesis tries while shrinking would be slow.
    """
    observation, violations = _violations(data, agents=agents, replay=replay, extra_checks=extra_checks)
    if violations:
        failing = dict(data)
        if shrink:
            failing, violations = shrink_failure(
                data, violations, agents=agents, budget=shrink_budget, extra_checks=extra_checks
            )
        path = write_failure(failing, violations, name=name, directory=directory)
        raise InvariantViolation(violations, path)
    return observation
