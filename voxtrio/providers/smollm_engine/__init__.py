"""The offline LLM engine behind :class:`voxtrio.providers.smollm_llm.SmolLM`.

Synchronous code for worker threads: a GGUF reader (``gguf_llama``), the
CTranslate2 conversion and generator (``ct2_engine``) and the JSON value
constraints for slot filling (``json_slots``). Nothing here imports a heavy
package at import time.
"""
