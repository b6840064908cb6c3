"""voxtrio: a real-time voice-agent runtime for Python, built on trio.

    session = voxtrio.AgentSession(stt=..., llm=..., tts=..., vad=...)
    trio.run(session.main, MyAgent(), transport)
"""

from .agent import Agent, AgentTask, AgentTaskCancelled
from .audio import AudioFrame
from .collector import tune_collector_for_calls
from .chat import AgentHandoff, ChatContext, ChatMessage, FunctionCall, FunctionCallOutput
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AudioFormatError,
    MissingAPIKeyError,
    ProviderOutputError,
    SessionClosedError,
    StopResponse,
    ToolError,
    VoxtrioError,
)
from .events import (
    ActiveProviderChanged,
    AgentFalseInterruption,
    AgentStateChanged,
    CloseEvent,
    ConversationItemAdded,
    DTMFReceived,
    ErrorEvent,
    Event,
    FunctionToolsExecuted,
    IVRLoopDetected,
    LineSilenceDetected,
    MetricsCollected,
    PlaybackFinished,
    PlaybackStarted,
    SpeechCreated,
    UserInputTranscribed,
    UserStateChanged,
)
from .options import NOT_GIVEN, APIConnectOptions, SessionConnectOptions, SessionOptions
from .recording import RecordingOptions
from .providers.fallback import FallbackLLM, FallbackSTT, FallbackTTS
from .session import AgentSession
from .speech import SpeechHandle
from .tools import FunctionTool, RunContext, ToolArgumentsError, Toolset, function_tool

__all__ = [
    "NOT_GIVEN",
    "APIConnectOptions",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "ActiveProviderChanged",
    "Agent",
    "AgentFalseInterruption",
    "AgentHandoff",
    "AgentSession",
    "AgentTask",
    "AgentTaskCancelled",
    "AgentStateChanged",
    "AudioFormatError",
    "AudioFrame",
    "ChatContext",
    "ChatMessage",
    "CloseEvent",
    "ConversationItemAdded",
    "DTMFReceived",
    "ErrorEvent",
    "Event",
    "FallbackLLM",
    "FallbackSTT",
    "FallbackTTS",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "FunctionToolsExecuted",
    "IVRLoopDetected",
    "LineSilenceDetected",
    "MetricsCollected",
    "MissingAPIKeyError",
    "PlaybackFinished",
    "PlaybackStarted",
    "RunContext",
    "ProviderOutputError",
    "SessionClosedError",
    "SessionConnectOptions",
    "RecordingOptions",
    "SessionOptions",
    "SpeechCreated",
    "SpeechHandle",
    "StopResponse",
    "ToolArgumentsError",
    "ToolError",
    "Toolset",
    "UserInputTranscribed",
    "UserStateChanged",
    "VoxtrioError",
    "function_tool",
    "tune_collector_for_calls",
]
