"""Tools for testing voice agents: scripted providers and scenario files.

The scripted providers follow a script instead of a model; they exist to test
agents and the runtime in virtual time, not to talk to anyone.
"""

from ..run_result import (
    AgentHandoffEvent,
    ChatMessageEvent,
    FunctionCallEvent,
    FunctionCallOutputEvent,
    RunAssert,
    RunEvent,
    RunResult,
    running,
)
from .scenario import Scenario, ScenarioError, compare_expected, load_scenario, play, run_scenario
from .scripted_realtime import ScriptedRealtimeModel
from .scripted import (
    ArrayTransport,
    LLMResponse,
    ScriptedAudioOutput,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedTransport,
    ScriptedTTS,
    ScriptedVAD,
    ToolCall,
    TTSResponse,
    UserSpeech,
    silence,
    tone,
)
from .wer import word_error_rate

__all__ = [
    "AgentHandoffEvent",
    "ChatMessageEvent",
    "FunctionCallEvent",
    "FunctionCallOutputEvent",
    "RunAssert",
    "RunEvent",
    "RunResult",
    "ArrayTransport",
    "LLMResponse",
    "Scenario",
    "ScenarioError",
    "ScriptedAudioOutput",
    "ScriptedLLM",
    "ScriptedRealtimeModel",
    "ScriptedSTT",
    "ScriptedTransport",
    "ScriptedTTS",
    "ScriptedVAD",
    "ToolCall",
    "TTSResponse",
    "UserSpeech",
    "compare_expected",
    "load_scenario",
    "play",
    "run_scenario",
    "running",
    "silence",
    "tone",
    "word_error_rate",
]
