"""Deliberate bugs, for showing that a test can fail.

A check that cannot fail proves nothing, so each invariant of the property
harness (``voxtrio.testing.invariants``) has a test that breaks the runtime on
purpose and sees the check name the fault. Each flag below is one such bug,
named for what goes wrong; the runtime consults it at the one place where that
bug would be. Everything is off unless a test switches a flag on::

    from voxtrio.faults import FAULTS
    monkeypatch.setattr(FAULTS, "drop_outputs_of_interrupted_tools", True)

Injecting a fault through a name, rather than by monkeypatching (or copying) a
private method, keeps the test meaning the same bug while the code around it
changes. Nothing but tests sets these.
"""

from __future__ import annotations

import attrs


@attrs.define
class Faults:
    drop_outputs_of_interrupted_tools: bool = False
    """An interrupted speech's tool calls reach the history; their outputs do not."""

    number_tool_outputs_as_their_calls: bool = False
    """A tool output takes its call's sequence number (two items in one place)."""

    forget_tools_abandoned_at_close: bool = False
    """Tools cut off by the close deadline leave no call or output in the history."""

    think_silently: bool = False
    """The agent turns to ``thinking`` without an ``agent_state_changed`` event."""

    ignore_playout_stalls: bool = False
    """The agent stays ``speaking`` while its TTS is stuck and nothing plays."""

    ignore_barge_in: bool = False
    """The user's speech never interrupts (or pauses) the agent."""

    flip_interrupted_on_assistant_messages: bool = False
    """Assistant messages are recorded as cut when heard in full, and the reverse."""

    commit_user_turns_twice: bool = False
    """Each user turn goes into the history a second time."""

    leave_drain_unanswered_at_close: bool = False
    """A ``drain()`` that a close overtakes never returns."""

    close_never_finishes: bool = False
    """The close sequence waits forever, so ``session.main`` never returns."""

    close_spins: bool = False
    """The close sequence loops without ever sleeping (virtual time stands still)."""

    report_api_errors_only: bool = False
    """A provider request that fails with anything but an ``APIError`` (a
    provider's own bug) leaves no ``error`` event."""


FAULTS = Faults()
