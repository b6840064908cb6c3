"""The tools of an agent on the phone: ``send_dtmf`` and ``end_call``.

Give them to an agent like any tool (``Agent(tools=[send_dtmf, end_call])``);
they act on the call the session runs on (:func:`current_call`).
"""

from __future__ import annotations

from ...errors import ToolError
from ...tools import RunContext, function_tool
from .call import current_call
from .dtmf import check_digits


@function_tool
async def send_dtmf(context: RunContext, digits: str) -> str:
    """Press keys on the phone keypad, to choose an option in a phone menu.

    Args:
        digits: the keys to press, in order: 0-9, *, # or A-D; w waits half a second, W a second
    """
    try:
        check_digits(digits)
    except ValueError as error:
        raise ToolError(str(error)) from None
    await current_call().send_dtmf(digits)
    return f"Pressed {digits}."


@function_tool
async def end_call(context: RunContext) -> str:
    """End the call and hang up.

    Call it when the caller is clearly done (they said goodbye, or asked to end
    the call). Not to put them on hold, pause or transfer them. It is the last
    thing the agent does on the call.
    """
    call = current_call()
    context.speech_handle.add_done_callback(lambda _handle: call.hang_up())
    return "The call ends once this reply has played: say a short goodbye, nothing more."
