"""The console in a real terminal: tmux runs it, send-keys types, capture-pane reads."""

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def wait_for(session, text, timeout=60.0):
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session, "-S", "-200"], capture_output=True, text=True
        ).stdout
        if text in screen:
            return screen
        time.sleep(0.2)  # polling a terminal screen: there is no event to wait on
    raise AssertionError(f"{text!r} did not appear; the screen was:\n{screen}")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_typing_in_the_console_gets_answers_and_ctrl_d_ends_the_call():
    session = f"voxtrio-console-{uuid.uuid4().hex[:8]}"
    command = f"{sys.executable} -m voxtrio console --no-audio; echo CONSOLE-EXITED-$?; sleep 60"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "50", "-c", str(ROOT), command], check=True
    )
    try:
        wait_for(session, "agent> Hello, this is the weather desk.")
        assert "text only" in wait_for(session, "Ctrl-D ends")
        subprocess.run(["tmux", "send-keys", "-t", session, "What is the weather like in Tokyo?", "Enter"], check=True)
        screen = wait_for(session, "agent> In Tokyo it is 27 degrees, humid and sunny.")
        assert "What is the weather like in Tokyo?" in screen  # the terminal echoes what was typed
        subprocess.run(["tmux", "send-keys", "-t", session, "Can you help me pack my suitcase?", "Enter"], check=True)
        wait_for(session, "(handed over to packing_adviser)")
        subprocess.run(["tmux", "send-keys", "-t", session, "C-d"], check=True)
        wait_for(session, "CONSOLE-EXITED-0")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
