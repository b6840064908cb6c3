"""The user's state (listening, speaking, away) and the away deadline."""

from __future__ import annotations

import attrs
import trio

from ...events import EventBus, UserState, UserStateChanged
from ...messages import AgentSpeech
from ...state import SessionState
from .settings import Tasks, TurnSettings


@attrs.define(kw_only=True)
class Presence:
    """Publishes ``SessionState.user_state`` (its writer) and its changes.

    Away is a deadline, armed while both sides listen and no tool runs
    (``user_away_timeout``; docs/behaviour.md, "User state"). Invariant:
    ``_away`` is the armed deadline's scope, None when none is armed.
    """

    # its user_state field is this part's to write
    _state: SessionState
    _bus: EventBus
    _settings: TurnSettings
    _tasks: Tasks
    # the armed away deadline (its scope's deadline), None while not armed
    _away: trio.CancelScope | None = attrs.field(init=False, default=None)

    @property
    def user_state(self) -> UserState:
        return self._state.user_state

    def set(self, new: UserState, agent: AgentSpeech) -> None:
        self._publish(new)
        self.update(agent)

    def _publish(self, new: UserState) -> None:
        old = self._state.user_state
        if old != new:
            self._state.user_state = new
            self._bus.emit(UserStateChanged(old_state=old, new_state=new))

    def update(self, agent: AgentSpeech) -> None:
        """Arm or disarm the away deadline for what both sides now do."""
        timeout = self._settings.options.user_away_timeout
        armed = (
            timeout is not None
            and self._state.user_state == "listening"
            and agent.state == "listening"
            and not agent.tools_running
        )
        if armed and self._away is None:
            assert timeout is not None
            scope = trio.CancelScope(deadline=trio.current_time() + timeout)
            self._away = scope
            self._tasks.start(self._away_after, scope)
        elif not armed and self._away is not None:
            self._away.cancel()
            self._away = None

    def rearm(self, agent: AgentSpeech) -> None:
        """The user was heard: the deadline starts again."""
        if self._away is not None:
            self._away.cancel()
            self._away = None
        self.update(agent)

    async def _away_after(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if scope.cancel_called and self._away is scope and scope.deadline <= trio.current_time():
            self._away = None
            self._publish("away")  # (an away user disarms nothing: no deadline is armed)
