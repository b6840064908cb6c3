"""A live browser session: the server's CPU, and the latency the page sees.

Starts ``voxtrio serve`` (offline pipeline, or ``--scripted``) as a child
process, opens its page in headless Chromium (Debian's, through selenium and
/usr/bin/chromedriver) with a fake microphone saying the demo caller's five
lines (Piper, ``--gap`` seconds apart so each is answered first), and reports:

* the server process's CPU over the call (from /proc: other load on the
  machine does not count), as % of one core: the cost of one live session;
* per turn, end of the user's speech to the agent's first sound, as the page
  measured it (both ends on the page's audio clock: the last loud microphone
  block, the first audible playback block after it), and the median.

Run: .venv/bin/python bench/browser_session.py [--pipeline offline|scripted|both]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SECRET = "bench secret, thirty-two bytes!!"
RATE = 48_000


def microphone(path: Path, gap: float, lead: float) -> float:
    import soxr

    from voxtrio.audio_files import write_audio_file
    from voxtrio.demo import CALLER_LINES
    from voxtrio.providers.piper_tts import PiperTTS

    voice = PiperTTS(noise_scale=0.0, noise_w_scale=0.0, length_scale=1.05)
    voice.load()
    pieces, at = [], lead
    for line in CALLER_LINES:
        speech = soxr.resample(voice.render(line), voice.sample_rate, RATE).astype(np.int16)
        pieces.append((at, speech))
        at += len(speech) / RATE + gap
    track = np.zeros(int(at * RATE), np.int16)
    for start, speech in pieces:
        track[int(start * RATE) : int(start * RATE) + len(speech)] = speech
    write_audio_file(path, track, RATE)
    return at


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_call(pipeline: str, wav: Path, duration: float, port: int) -> dict:
    from selenium import webdriver

    command = [sys.executable, "-m", "voxtrio", "serve", "--port", str(port)]
    if pipeline == "scripted":
        command.append("--scripted")
    server = subprocess.Popen(
        command, stdout=subprocess.PIPE, text=True, env={**os.environ, "VOXTRIO_SECRET": SECRET, "OPENBLAS_NUM_THREADS": "1"}
    )
    profile = tempfile.mkdtemp(prefix="voxtrio-bench-")
    driver = None
    try:
        link = next(line.strip() for line in server.stdout if "?key=" in line)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in (
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={wav}%noloop", "--autoplay-policy=no-user-gesture-required",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path="/usr/bin/chromedriver"))
        driver.get(link)
        before, began = cpu_seconds(server.pid), time.monotonic()
        driver.find_element("id", "start").click()
        time.sleep(duration + 8.0)
        used, wall = cpu_seconds(server.pid) - before, time.monotonic() - began
        state = driver.execute_script("return window.voxtrio")
        driver.find_element("id", "hangup").click()
        time.sleep(1.0)
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait()
        shutil.rmtree(profile, ignore_errors=True)
    latencies, seen = [], set()
    for utterance in state["utterances"]:
        end = utterance["userSpeechEnd"]
        if end is not None and end not in seen:  # the first sound after each line
            seen.add(end)
            latencies.append(utterance["latency"])
    heard = [e["text"] for e in state["events"] if e["type"] == "user_transcript" and e["final"]]
    server_first_audio = [e["first_audio"] for e in state["events"] if e["type"] == "metrics" and e["first_audio"] is not None]
    return {"cpu": 100 * used / wall, "latencies": latencies, "heard": heard, "server_first_audio": server_first_audio}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pipeline", choices=("offline", "scripted", "both"), default="both")
    parser.add_argument("--gap", type=float, default=12.0, help="seconds of silence after each line")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "caller.wav"
        duration = microphone(wav, args.gap, lead=7.0)  # the first line after the greeting
        pipelines = ("scripted", "offline") if args.pipeline == "both" else (args.pipeline,)
        for number, pipeline in enumerate(pipelines):
            result = one_call(pipeline, wav, duration, 18900 + number)
            ms = [round(1000 * x) for x in result["latencies"]]
            print(f"\n{pipeline} pipeline, one live browser session of {duration:.0f} s:")
            print(f"  server CPU: {result['cpu']:.1f} % of a core")
            print(f"  end of speech -> first audio, seen by the page: {ms} ms; median {statistics.median(ms) if ms else '-'} ms")
            print(f"  the same, measured by the server (turn metrics): {[round(1000 * x) for x in result['server_first_audio']]} ms")
            print(f"  heard: {result['heard']}")
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
