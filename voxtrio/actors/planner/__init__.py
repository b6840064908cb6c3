"""Planner: owns the conversation and decides what the agent says and when.

It holds the chat history, the current agent, the speech queue and the agent
state. One scheduling loop authorizes one speech step at a time (priority,
then FIFO; ``min_consecutive_speech_delay`` between them). Every speech runs
in a task of the Planner's nursery:

* a reply step starts its LLM at once, commits the user message when the
  speech is scheduled, starts synthesis, waits for authorization (and, when it
  may be interrupted, for the user to be silent), runs tool calls as soon as
  they are parsed, plays its audio through the Speaker and commits what was
  heard;
* tool outputs are committed with their calls in one step, whatever happens
  to the speech (played, interrupted, handed off); a follow-up step runs on the
  same handle when an output needs a reply, ``max_tool_steps`` times, then
  once more with ``tool_choice="none"`` so the agent never goes silent;
* an AgentTask awaited by a tool or hook becomes the current agent until it
  completes (a stack: tasks may nest); the awaiting speech is protected from
  the user meanwhile, and is not counted as work a run waits for.

Items go into the context of the agent they belong to (the one a speech was
made for), not whichever agent is current when they are committed: a tool
that finishes after a hand-off still answers in its own agent's context.

User code (hooks and tools) runs here, never while anything is held that
another actor needs; the Session bounds it with the close deadline.

The package, one part per module; the actor builds each with what it needs
and no part sees the actor:

* ``actor``: the inbox, the dispatch of each message, the activity's start and drain;
* ``speeches``: the speech scheduler (queue, authorization, each speech's
  tasks, and ``may_start``, the one answer to "may this start now?");
* ``say``, ``reply``: a say() step and a reply step, each returning its result;
* ``tool_runner``: a step's tool calls; what follows them is returned as data;
* ``playout``: synthesis and playout requests to the Speaker;
* ``agent_tasks``: the AgentTask stack; ``activity``: which agent is current;
* ``user_turns``, ``preemptive``: user turns and replies prepared ahead;
* ``barge_in``: the user cutting in, and false interruptions;
* ``history``: commits; ``agent_state``: the agent's state and what the Turn
  hears of it; ``workers``: the counted tasks and the user code they run;
  ``stage``: the current agent and options as every part reads them.
"""

from .actor import Planner
from .stage import Stage

__all__ = ["Planner", "Stage"]
