"""Turn: decides when the user's turn is over and when the user cuts in.

Endpointing is measured on one clock, the audio clock, whatever reported
the end of speech (the VAD, itself ``min_silence_duration`` late; the
recognizer; a manual commit)::

    commit_at = last_voiced + delay
    delay     = max_endpointing_delay  if an end-of-turn detector finds the
                                       turn unlikely to be over,
                min_endpointing_delay  otherwise

where ``last_voiced`` is the audio timestamp of the last voiced audio: the
VAD's end of speech minus the silence it waited, the last voiced inference
tick, or the recognizer's end time when there is no VAD. The eou metrics
report the parts: ``end_of_utterance_delay = commit - last_voiced``,
``transcription_delay = final transcript - last_voiced``,
``endpointing_delay`` (the delay chosen) and ``end_of_turn_probability``.
The reference measures this differently in VAD and STT modes (its #4325);
here it is the same formula in every mode.

Rules kept here: no commit without a transcript when there is a recognizer;
new speech cancels a pending commit; transcript fragments that arrive after
a commit start the next turn (never a phantom turn of their own); the two
interruption paths' gates (duration, words, AEC warm-up, mode); the user
state (listening, speaking, away on a deadline, paused while tools run);
the reply hold-off; the transcription timeout and the user-turn limit.

The package: ``actor.py`` (the inbox, the dispatch and the rules that join
the parts), ``utterance.py`` (the turn being built, the audio clock),
``endpointing.py`` (the pending commit and its metrics), ``barge_in.py``
(interruptions, the reply hold-off, muting), ``presence.py`` (the user state
and the away deadline), ``limits.py`` (the transcription timeout and the
user-turn limit), ``settings.py`` (the turn-detection mode, chosen once).
"""

from .actor import Turn
from .utterance import count_words

__all__ = ["Turn", "count_words"]
