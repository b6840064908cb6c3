"""The session's published state: written by one owner each, read by anyone.

Actors never read each other's attributes; what the public API must answer
synchronously (``session.agent_state``, ``current_speech``, ``history``...) is
published here by the actor that owns it. Each field names its single writer;
the exceptions are named where they are. When the session ends, ``main()``
puts the fields the public API reads back to their resting values (the
actors that wrote them are gone by then).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Callable

import attrs

from ._sync import Flag
from .chat import ChatContext, ChatItem

if TYPE_CHECKING:
    from .agent import Agent
    from .events import AgentState, UserState
    from .speech import SpeechHandle


class Phase(enum.Enum):
    """Where the session is in its life; written by the supervisor alone.

    STARTING -> RUNNING -> (DRAINING ->) CLOSING -> CLOSED, never backwards;
    a close may come in any phase before CLOSED (a provider that fails while
    the actors start), and a session that never started stays STARTING.
    """

    STARTING = "starting"  # main() is starting the actors (a fresh state is here)
    RUNNING = "running"  # the actors run and the session takes turns and speech
    DRAINING = "draining"  # session.drain(): no new turns; on_exit and the queue play out
    CLOSING = "closing"  # a close was asked for: only the session's own code may still speak
    CLOSED = "closed"  # main() is over (or ending): nothing of the session runs


@attrs.define
class SessionState:
    # Planner
    agent_state: AgentState = "initializing"
    current_speech: SpeechHandle | None = None
    current_agent: Agent | None = None
    history: ChatContext = attrs.Factory(ChatContext)
    accepting_speech: bool = False
    running_user_code: dict[int, str] = attrs.Factory(dict)
    # Planner: its tasks still to finish, not counting those parked on an AgentTask
    # that waits for the user; and whether an AgentTask is being switched to or from.
    planner_busy: int = 0
    agent_switching: bool = False
    # The supervisor: +1 when a hand-off is asked for (SessionSupervisor.request_handoff,
    # at once, so that a run waits for it), -1 when it is done or refused.
    # Exception: the Planner counts (+1) the hand-off a tool returns as it sends
    # it, from inside the tool step's counted task: counted on arrival instead,
    # session.run() could see an idle session between the two.
    handoffs_pending: int = 0
    # the API (+1 for each speech handle made), Planner (-1 when it takes it in)
    speeches_posted: int = 0
    # true when none of the above is going on: what session.run() waits for
    idle: Flag = attrs.Factory(lambda: Flag(True))
    # called with each item committed to the history (and, for a hand-off, the
    # old and new Agent objects); RunResult listens here
    commit_listeners: list[Callable[[ChatItem, Any, Any], None]] = attrs.Factory(list)
    # AudioIn: seconds of input the conversion to pipeline frames (resampling,
    # framing) holds back, i.e. how much later the pipeline hears the user
    # than the transport delivered them (reported in the eou metrics)
    input_delay: float = 0.0
    # Turn
    user_state: UserState = "listening"
    # False while replies must wait: the user is talking, or paused too briefly
    # (under half the endpointing delay) to have finished (docs/behaviour.md,
    # "The reply hold-off"). A flag rather than a message, so the Speaker sees
    # it the instant the Turn decides.
    user_silent: Flag = attrs.Factory(lambda: Flag(True))
    # Supervisor: the lifecycle (see Phase). A close asked for through the public
    # API is CLOSING at once (SessionSupervisor.request_close), before the
    # supervisor's inbox hears of it, so that nothing new is accepted meanwhile.
    phase: Phase = Phase.STARTING
    # Supervisor: trio time at which it took in the first close request
    close_requested_at: float | None = None
    # AgentSession.main(), at start: facts about the transport (e.g. "audio_output")
    extra: dict[str, Any] = attrs.Factory(dict)

    @property
    def running(self) -> bool:
        """The actors run: from the end of the start-up until main() ends."""
        return self.phase in (Phase.RUNNING, Phase.DRAINING, Phase.CLOSING)

    @property
    def closing(self) -> bool:
        """A close was asked for, or the session is over."""
        return self.phase in (Phase.CLOSING, Phase.CLOSED)

    def update_idle(self) -> None:
        self.idle.set(
            self.planner_busy == 0
            and self.handoffs_pending == 0
            and self.speeches_posted == 0
            and not self.agent_switching
        )

    def count_posted_speech(self, delta: int) -> None:
        self.speeches_posted += delta
        self.update_idle()

    def count_handoff(self, delta: int) -> None:
        self.handoffs_pending += delta
        self.update_idle()

    def notify_committed(self, item: ChatItem, old_agent: Any = None, new_agent: Any = None) -> None:
        for listener in list(self.commit_listeners):
            listener(item, old_agent, new_agent)
