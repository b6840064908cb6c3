"""A user turn on the reference's timings (VAD mode, scripted providers)."""

from helpers import STORY, history, messages, of, states, timeline


async def test_events_and_metrics_follow_the_reference_timeline(autojump_clock):
    lines = await timeline(
        user=[{"start": 0.5, "end": 2.5, "transcript": "Hello, how are you?", "stt_delay": 0.2}],
        llm=[{"input": "Hello, how are you?", "content": "I'm doing well, thank you!"}],
        tts=[{"input": "I'm doing well, thank you!", "audio_duration": 2.0}],
    )
    assert states(lines) == [(0.0, "listening"), (3.0, "thinking"), (3.5, "speaking"), (5.5, "listening")]
    assert states(lines, "user_state_changed") == [(0.55, "speaking"), (3.0, "listening")]
    final = of(lines, "user_input_transcribed", is_final=True)
    assert [(line["t"], line["transcript"]) for line in final] == [(2.7, "Hello, how are you?")]
    added = of(lines, "conversation_item_added")
    assert [(line["t"], line["item"]["type"], line["item"].get("role")) for line in added] == [
        (0.0, "agent_handoff", None),
        (3.0, "message", "user"),
        (5.5, "message", "assistant"),
    ]
    eou, llm, tts = (of(lines, "metrics_collected", kind=k)[0] for k in ("eou", "llm", "tts"))
    assert (eou["end_of_utterance_delay"], eou["transcription_delay"]) == (0.5, 0.2)
    assert (llm["ttft"], llm["duration"]) == (0.1, 0.3)
    assert (tts["ttfb"], tts["audio_duration"]) == (0.2, 2.0)
    assert of(lines, "playback_finished")[0]["position"] == 2.0


async def test_barge_in_interrupts_at_the_reference_time_and_keeps_what_was_heard(autojump_clock):
    lines = await timeline(
        user=[*STORY["user"], {"start": 5.0, "end": 6.0, "transcript": "Stop!"}],
        llm=STORY["llm"],
        tts=STORY["tts"],
    )
    finished = of(lines, "playback_finished")
    assert [(f["t"], f["position"], f["interrupted"]) for f in finished] == [(5.55, 2.05, True)]
    assert states(lines) == [
        (0.0, "listening"),
        (3.0, "thinking"),
        (3.5, "speaking"),
        (5.55, "listening"),
        (6.5, "thinking"),
        (6.5, "listening"),
    ]
    assert messages(lines) == [
        ("user", "Tell me a story.", False),
        ("assistant", "Here is", True),
        ("user", "Stop!", False),
    ]


async def test_cough_shorter_than_min_interruption_duration_does_not_interrupt(autojump_clock):
    lines = await timeline(
        user=[*STORY["user"], {"start": 5.0, "end": 5.3, "transcript": ""}],
        llm=STORY["llm"],
        tts=STORY["tts"],
    )
    assert [(f["position"], f["interrupted"]) for f in of(lines, "playback_finished")] == [(10.0, False)]


async def test_noise_without_transcript_never_commits_a_turn(autojump_clock):
    lines = await timeline(user=[{"start": 0.5, "end": 2.5, "transcript": ""}])
    assert states(lines, "user_state_changed") == [(0.55, "speaking"), (3.0, "listening")]
    assert not of(lines, "speech_created")
    assert [item["type"] for item in history(lines)] == ["agent_handoff"]


async def test_interrupted_before_any_audio_commits_no_assistant_message(autojump_clock):
    lines = await timeline(
        user=[*STORY["user"], {"start": 3.0, "end": 4.0, "transcript": "Stop!"}],
        llm=[{**STORY["llm"][0], "duration": 1.0}],
        tts=STORY["tts"],
    )
    assert states(lines)[:4] == [(0.0, "listening"), (3.0, "thinking"), (3.55, "listening"), (4.5, "thinking")]
    assert not of(lines, "playback_started")
    assert not of(lines, "playback_finished")
    assert messages(lines) == [("user", "Tell me a story.", False), ("user", "Stop!", False)]


async def test_with_min_interruption_words_1_a_cough_does_not_interrupt_but_one_word_does(autojump_clock):
    lines = await timeline(
        options={"min_interruption_words": 1},
        user=[*STORY["user"], {"start": 4.0, "end": 5.0}, {"start": 7.0, "end": 7.5, "transcript": "Stop."}],
        llm=STORY["llm"],
        tts=STORY["tts"],
    )
    # the cough (4-5 s) has no words; "Stop." cuts the story when its final comes (7.7)
    finished = of(lines, "playback_finished")
    assert [(f["t"], f["interrupted"]) for f in finished] == [(7.7, True)]


async def test_a_manual_commit_can_skip_the_reply(autojump_clock):
    lines = await timeline(
        options={"turn_detection": "manual"},
        user=[{"start": 0.5, "end": 1.5, "transcript": "Just noting this."}],
        llm=[{"input": "Just noting this.", "content": "Noted."}],
        actions=[{"at": 2.0, "call": "commit_user_turn", "args": {"skip_reply": True}}],
        end={"at": 5.0},
    )
    assert messages(lines) == [("user", "Just noting this.", False)]
    assert of(lines, "speech_created") == []
