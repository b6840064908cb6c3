"""The served page in a real browser: headless Chromium with a fake microphone.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them),
driven by selenium through ``/usr/bin/chromedriver`` (nothing is downloaded).
The microphone is a WAV file (``--use-file-for-fake-audio-capture``); the
page's own measurements (``window.voxtrio``: output peak, audible render
blocks, blocks that sounded after a clear or pause) say what it played.

What each layer proves:

* the model-free pipeline (always run): the page captures the microphone as
  16 kHz frames the server's VAD hears, plays the agent's audio, shows the
  words as they play, goes quiet the moment the server clears or pauses it
  (no audible render block after it: under 3 ms), reports its play head
  (the history keeps only the words the page played), and hangs up cleanly;
* the offline pipeline (slow, real models): a spoken question through the
  page reaches Whisper as the words that were said, is answered with the
  weather tool, and the answer is heard and shown.
"""

from __future__ import annotations

import os
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

import voxtrio
from voxtrio.audio_files import write_audio_file

from serving import running_server

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.thorough,  # a real browser: seconds a test
    pytest.mark.skipif(CHROMIUM is None or not os.path.exists(CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver"),
]
webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("hypercorn")

LONG_GREETING = "Hello, this is the weather desk. I know the weather in Lisbon, Oslo, Paris, Tokyo and Cairo."
MIC_RATE = 48_000


class LongGreeter(voxtrio.Agent):
    def __init__(self) -> None:
        super().__init__(instructions="Greet, then repeat.")

    async def on_enter(self) -> None:
        self.session.say(LONG_GREETING)


def fake_microphone(path: Path, pieces: list[tuple[float, np.ndarray | None]], total: float) -> Path:
    """A 48 kHz WAV: each (start, samples at 48 kHz) placed on silence."""
    track = np.zeros(int(total * MIC_RATE), np.int16)
    for start, samples in pieces:
        offset = int(start * MIC_RATE)
        track[offset : offset + len(samples)] = samples[: len(track) - offset]
    write_audio_file(path, track, MIC_RATE)
    return path


def start_browser(microphone: Path, profile: Path) -> Any:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}%noloop",
        "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={profile}", "--window-size=900,760",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))


class Page:
    """The browser, driven from trio (selenium blocks, so it runs in a thread)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    async def run(self, function: Any, *args: Any) -> Any:
        return await trio.to_thread.run_sync(partial(function, *args))

    async def state(self) -> dict[str, Any]:
        return await self.run(self.driver.execute_script, "return window.voxtrio")

    async def text(self, element_id: str) -> str:
        return await self.run(lambda: self.driver.find_element("id", element_id).text)

    async def click(self, element_id: str) -> None:
        await self.run(lambda: self.driver.find_element("id", element_id).click())

    async def wait_for(self, condition: Any, what: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state()
            if condition(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never got to: {what}; its state: {state}")
            await trio.sleep(0.2)


async def open_call(server: Any, port: int, microphone: Path, profile: Path, query: str = "") -> Page:
    driver = await trio.to_thread.run_sync(start_browser, microphone, profile)
    page = Page(driver)
    await page.run(driver.get, server.access_url(f"http://127.0.0.1:{port}") + query)
    await page.click("start")
    return page


def finals(state: dict[str, Any], type: str) -> list[str]:
    return [e["text"] for e in state["events"] if e["type"] == type and e["final"]]


async def test_a_call_in_the_browser_on_the_model_free_pipeline(tmp_path):
    from voxtrio.server.command import scripted_pipeline

    pipeline = scripted_pipeline()
    new_session = lambda: (voxtrio.AgentSession(min_endpointing_delay=0.5, **pipeline), LongGreeter())  # noqa: E731
    t = np.arange(int(1.2 * MIC_RATE)) / MIC_RATE
    burst = (8000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)  # "speech" for the energy VAD
    microphone = fake_microphone(tmp_path / "mic.wav", [(1.5, burst)], total=12.0)
    async with running_server(new_session) as (server, port):
        # Chromium's noise suppression would remove a steady tone: this call turns it off.
        page = await open_call(server, port, microphone, tmp_path / "profile", "&echo_cancellation=0")
        try:
            state = await page.wait_for(lambda s: s["framesSent"] > 50 and s["connected"], "sending audio")
            state = await page.wait_for(lambda s: any(t.startswith("You said") for t in finals(s, "agent_transcript")), "the reply")
            state = await page.wait_for(lambda s: s["playback"] and s["playback"]["state"] == "idle" and s["playback"]["stats"]["clears"] >= 1, "the reply played out")
            stats = state["playback"]["stats"]
            assert stats["peak"] > 0.1 and stats["audibleBlocks"] > 100  # the page played the agent
            assert stats["stops"] >= 1 and stats["audibleAfterStop"] == 0  # and went quiet at once when told
            heard = finals(state, "user_transcript")[0]
            assert heard.startswith("[1.") and heard.endswith(" s of speech]")
            assert f"You said: {heard}" in await page.text("transcript")
            assert state["utterances"][-1]["latency"] > 0  # the reply came after the user's sound
            session = next(iter(server.live.values())).session
            cut = [m for m in session.history.items if m.type == "message" and m.role == "assistant"][0]
            assert cut.interrupted and LONG_GREETING.startswith(cut.content) and cut.content != LONG_GREETING
            shown = [e["text"] for e in state["events"] if e["type"] == "agent_transcript" and e["speech_id"] == "speech_1"]
            assert shown[-1] == cut.content  # the page showed exactly the words the history kept
            await page.click("hangup")
            state = await page.wait_for(lambda s: s["closed"] is not None, "the end of the call")
            assert state["closed"] == "user_initiated" and not state["errors"]
            await trio.sleep(0.5)
            assert not server.live
        finally:
            await trio.to_thread.run_sync(page.driver.quit)


@pytest.mark.slow
async def test_a_spoken_question_in_the_browser_on_the_offline_pipeline(tmp_path):
    from voxtrio.demo import build_pipeline, find_example_agent, load_module
    from voxtrio.providers.piper_tts import PiperTTS

    example = load_module(find_example_agent(None))
    pipeline = build_pipeline(example.ROUTES)
    voice = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.05)
    voice.load()
    question = voice.render("What is the weather like in Lisbon today?")
    import soxr

    question = soxr.resample(question, voice.sample_rate, MIC_RATE).astype(np.int16)
    # Asked over the agent's greeting: a barge-in, then the answer.
    microphone = fake_microphone(tmp_path / "mic.wav", [(2.0, question)], total=20.0)
    new_session = lambda: (voxtrio.AgentSession(min_endpointing_delay=0.5, **pipeline), example.WeatherDesk())  # noqa: E731
    try:
        async with running_server(new_session) as (server, port):
            page = await open_call(server, port, microphone, tmp_path / "profile")
            try:
                state = await page.wait_for(lambda s: finals(s, "user_transcript"), "the question transcribed", timeout=40)
                heard = finals(state, "user_transcript")[0].lower()
                assert "weather" in heard and "lisbon" in heard, heard  # the server heard the words
                state = await page.wait_for(
                    lambda s: any("Lisbon" in t for t in finals(s, "agent_transcript")), "the answer", timeout=60
                )
                calls = [c for e in state["events"] if e["type"] == "tool_calls" for c in e["calls"]]
                assert calls and calls[0]["name"] == "get_weather"
                state = await page.wait_for(lambda s: s["playback"]["state"] == "idle", "the answer played out")
                stats = state["playback"]["stats"]
                assert stats["peak"] > 0.05 and stats["stops"] >= 1 and stats["audibleAfterStop"] == 0
                assert "Lisbon" in await page.text("transcript")
                await page.run(page.driver.save_screenshot, os.environ.get("VOXTRIO_SCREENSHOT", str(tmp_path / "page.png")))
                await page.click("hangup")
                await page.wait_for(lambda s: s["closed"] is not None, "the end of the call")
            finally:
                await trio.to_thread.run_sync(page.driver.quit)
    finally:
        pipeline["llm"].close()
