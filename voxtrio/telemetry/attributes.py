"""Span attribute names: LiveKit Agents' ``lk.*`` names and OpenTelemetry's GenAI ones.

Kept byte for byte as the reference spells them, so that queries and
dashboards written for its traces find the same fields in voxtrio's. The
``lk.pii.`` ones carry what the user or the model said: a collector can strip
them by that segment. The few voxtrio adds are marked.
"""

SESSION_ID = "session.id"  # OpenTelemetry's general attribute; Langfuse groups traces by it
SPEECH_ID = "lk.speech_id"
AGENT_LABEL = "lk.agent_label"
SPEECH_INTERRUPTED = "lk.interrupted"
CLOSE_REASON = "lk.close_reason"
SPEECH_SOURCE = "voxtrio.speech.source"  # voxtrio: say, generate_reply or tool_response

USER_TRANSCRIPT = "lk.pii.user_transcript"
TRANSCRIPTION_DELAY = "lk.transcription_delay"
END_OF_TURN_DELAY = "lk.end_of_turn_delay"
EOU_DELAY = "lk.eou.endpointing_delay"
EOU_PROBABILITY = "lk.eou.probability"
STT_AUDIO_DURATION = "voxtrio.stt.audio_duration"  # voxtrio: seconds of audio recognized

RESPONSE_TTFT = "lk.response.ttft"
LLM_METRICS = "lk.llm_metrics"
RESPONSE_TTFB = "lk.response.ttfb"
TTS_METRICS = "lk.tts_metrics"
TTS_LABEL = "lk.tts.label"
TTS_CHARACTERS = "voxtrio.tts.characters"  # voxtrio: characters sent to the TTS

FUNCTION_TOOL_ID = "lk.function_tool.id"
FUNCTION_TOOL_NAME = "lk.function_tool.name"
FUNCTION_TOOL_ARGS = "lk.pii.function_tool.arguments"
FUNCTION_TOOL_OUTPUT = "lk.pii.function_tool.output"
FUNCTION_TOOL_IS_ERROR = "lk.function_tool.is_error"

HANDOFF_FROM = "voxtrio.handoff.from"  # voxtrio: on the agent_handoff span event
HANDOFF_TO = "voxtrio.handoff.to"
ERROR_SOURCE = "voxtrio.error.source"  # voxtrio: stt, llm, tts, tool... (on exception events)
ERROR_RECOVERABLE = "voxtrio.error.recoverable"

GEN_AI_OPERATION_NAME = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_CONVERSATION_ID = "gen_ai.conversation.id"
GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
