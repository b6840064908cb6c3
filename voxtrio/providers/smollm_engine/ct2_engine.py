"""A Llama GGUF converted once to CTranslate2, then run with ``ctranslate2.Generator``.

Why CTranslate2: it is already installed with faster-whisper (no compiler, no
torch), and int8 on one thread gives ~50 tokens/s and a first token in ~40 ms
for SmolLM2-135M here (llama-cpp-python has only a source distribution, an
18-minute compile on two cores). The conversion reads the GGUF with the
``gguf`` package, dequantizes the weights to float32, fills a
TransformerDecoderModelSpec and saves it re-quantized to int8 in a cache
folder (~6 s, once); later loads take the cache (< 1 s).

A synchronous API, meant for a worker thread::

    engine = load(gguf_path, threads=1)
    result = engine.generate(messages, max_tokens=64, on_token=print, cancel=flag)
    args = engine.fill_json(messages, {"type": "object", "properties": {"city": {"type": "string"}}})
    engine.close()  # required, see CT2Engine.close
"""

from __future__ import annotations

import codecs
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from . import json_slots
from .gguf_llama import ChatFormat, token_bytes_table

CONVERTER_VERSION = 1
Message = Mapping[str, str]


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (end token or stop string), "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    first_token_s: float | None  # from the call to the first generated token
    total_s: float


# -- conversion ---------------------------------------------------------------


def default_cache_dir() -> pathlib.Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "voxtrio" / "ct2"


def cache_path_for(gguf_path: pathlib.Path, cache_dir: pathlib.Path, quantization: str) -> pathlib.Path:
    import ctranslate2  # its model format and spec API change between releases: part of the key

    st = gguf_path.stat()
    key = (f"{gguf_path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{quantization}|v{CONVERTER_VERSION}"
           f"|ct2-{ctranslate2.__version__}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{gguf_path.stem}-{quantization}-{digest}"


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike, *, quantization: str = "int8") -> None:
    """Write a CTranslate2 model (plus tokenizer.json and voxtrio.json) into out_dir."""
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    from .gguf_llama import GGUFLlama

    src = GGUFLlama(gguf_path)
    hp = src.hparams
    spec = transformer_spec.TransformerDecoderModelSpec.from_config(
        hp.n_layers,
        hp.n_heads,
        pre_norm=True,
        activation=common_spec.Activation.SWISH,
        ffn_glu=True,
        rms_norm=True,
        rotary_dim=0,  # rotate the whole head
        rotary_interleave=True,  # GGUF stores Q/K for llama.cpp's adjacent-pair rotary
        rotary_base=hp.rope_base,
        num_heads_kv=hp.n_kv_heads if hp.n_kv_heads != hp.n_heads else None,
    )
    dec = spec.decoder
    dec.scale_embeddings = False
    embeddings = src.tensor("token_embd.weight")
    dec.embeddings.weight = embeddings
    dec.layer_norm.gamma = src.tensor("output_norm.weight")
    dec.projection.weight = src.output_weight(embeddings)  # same array when tied: CT2 aliases it
    for i, layer in enumerate(dec.layer):
        w = src.layer_tensors(i)
        layer.self_attention.layer_norm.gamma = w["attn_norm"]
        layer.self_attention.linear[0].weight = np.concatenate([w["attn_q"], w["attn_k"], w["attn_v"]])
        layer.self_attention.linear[1].weight = w["attn_output"]
        layer.ffn.layer_norm.gamma = w["ffn_norm"]
        layer.ffn.linear_0.weight = w["ffn_gate"]
        layer.ffn.linear_0_noact.weight = w["ffn_up"]
        layer.ffn.linear_1.weight = w["ffn_down"]

    tokens = src.tokens
    spec.register_vocabulary(tokens)
    spec.config.bos_token = tokens[int(src.field("tokenizer.ggml.bos_token_id", 1))]
    spec.config.eos_token = src.eos_token()
    spec.config.unk_token = tokens[int(src.field("tokenizer.ggml.unknown_token_id", 0))]
    spec.config.layer_norm_epsilon = hp.rms_eps
    spec.validate()
    spec.optimize(quantization=quantization)

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    (out_dir / "tokenizer.json").write_text(src.tokenizer_json(), encoding="utf-8")
    meta = {
        "converter_version": CONVERTER_VERSION,
        "source": src.path.name,
        "source_sha256": _sha256(src.path),
        "quantization": quantization,
        "ctranslate2": ctranslate2.__version__,
        "chat_default_system": src.chat_format().default_system,
        "end_tokens": [src.eos_token(), tokens[0]],
        "context_length": hp.context_length,
    }
    (out_dir / "voxtrio.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def ensure_converted(gguf_path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                     quantization: str = "int8") -> pathlib.Path:
    """Return the cached CTranslate2 folder for this GGUF, converting it first if needed.

    The conversion writes to a temporary sibling folder and renames it into place, so
    an interrupted run never leaves a half-written model that later loads would trust.
    """
    gguf_path = pathlib.Path(gguf_path)
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache_path_for(gguf_path, cache_dir, quantization)
    if (target / "voxtrio.json").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=cache_dir))
    try:
        convert_gguf(gguf_path, tmp, quantization=quantization)
        tmp.chmod(0o755)  # mkdtemp makes it private
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished first
            if not (target / "voxtrio.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- engine -------------------------------------------------------------------


def load(gguf_path: str | os.PathLike, threads: int = 1, *, cache_dir: str | os.PathLike | None = None,
         quantization: str = "int8") -> "CT2Engine":
    """Load (converting once if needed) a Llama GGUF for CPU inference with `threads` threads."""
    return CT2Engine(ensure_converted(gguf_path, cache_dir=cache_dir, quantization=quantization), threads=threads)


class CT2Engine:
    max_fallbacks = 12  # full-logit passes allowed per constrained value (~50-100 ms each)

    def __init__(self, model_dir: str | os.PathLike, *, threads: int = 1, compute_type: str | None = None):
        import ctranslate2
        from tokenizers import Tokenizer

        model_dir = pathlib.Path(model_dir)
        meta = json.loads((model_dir / "voxtrio.json").read_text(encoding="utf-8"))
        self._generator = ctranslate2.Generator(str(model_dir), device="cpu",
                                                compute_type=compute_type or meta["quantization"],
                                                inter_threads=1, intra_threads=threads)
        self._tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self._vocab: list[str] = [self._tokenizer.id_to_token(i) for i in range(self._tokenizer.get_vocab_size())]
        self._token_bytes = token_bytes_table(self._vocab)
        self._special = set(self._tokenizer.get_added_tokens_decoder())
        self._end_tokens: list[str] = meta["end_tokens"]
        self.chat_format = ChatFormat(default_system=meta["chat_default_system"], end_token=meta["end_tokens"][0])
        self.context_length: int = meta["context_length"]

    def close(self) -> None:
        """Free the model now. Do call it: a Generator that has served generate_tokens and is
        still alive when the interpreter exits sometimes aborts the process (SIGABRT,
        "terminate called without an active exception"; seen with ctranslate2 4.8.5)."""
        generator, self._generator = self._generator, None
        if generator is not None:
            generator.unload_model()
            del generator

    def __enter__(self) -> "CT2Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- prompts --------------------------------------------------------------

    def _tokens(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    def _prompt(self, messages: Sequence[Message], assistant_prefix: str = "") -> tuple[list[str], list[str]]:
        """(static_prompt, rest): the system turn is passed separately so that CTranslate2
        caches its KV state and later turns with the same system prompt skip it. (That
        cache keeps one entry per distinct system prompt: keep system prompts stable.)"""
        system_text, rest_text = self.chat_format.split(messages)
        static, rest = self._tokens(system_text), self._tokens(rest_text + assistant_prefix)
        if len(static) + len(rest) >= self.context_length:
            raise ValueError(f"prompt of {len(static) + len(rest)} tokens exceeds the context of {self.context_length}")
        return static, rest

    # -- free generation ------------------------------------------------------

    def generate(self, messages: Sequence[Message], max_tokens: int = 128, stop: Sequence[str] = (),
                 on_token: Callable[[str], None] | None = None, cancel: CancelFlag | None = None,
                 *, temperature: float = 0.0, top_k: int = 40, top_p: float = 0.95,
                 repetition_penalty: float = 1.0) -> Generation:
        """Generate one assistant reply. on_token receives text pieces (whole UTF-8 characters,
        never a piece of a stop string); it runs in the calling thread, between tokens.
        cancel is checked before each token is delivered."""
        t0 = time.perf_counter()
        static, rest = self._prompt(messages)
        sampling = dict(sampling_topk=1) if temperature <= 0 else dict(
            sampling_topk=top_k, sampling_topp=top_p, sampling_temperature=temperature)
        steps = self._generator.generate_tokens(
            rest, static_prompt=static or None, cache_static_prompt=True, max_length=max_tokens,
            end_token=self._end_tokens, repetition_penalty=repetition_penalty, **sampling)
        text = _StreamText(stop, on_token)
        first = None
        n = 0
        reason = "length"
        try:
            for step in steps:
                if cancel is not None and cancel.is_set():
                    reason = "cancelled"
                    break
                if first is None:
                    first = time.perf_counter() - t0
                if step.token in self._end_tokens:  # CT2 also reports the end token itself
                    reason = "stop"
                    break
                n += 1
                if text.feed(self._token_bytes[step.token_id]):
                    reason = "stop"
                    break
        finally:
            steps.close()  # stops the CT2 decoding loop at its next step
        text.finish(emit=reason != "cancelled")
        return Generation(text=text.value, finish_reason=reason, prompt_tokens=len(static) + len(rest),
                          completion_tokens=n, first_token_s=first, total_s=time.perf_counter() - t0)

    # -- constrained slot filling --------------------------------------------

    def fill_json(self, messages: Sequence[Message], schema: Mapping, *, copy_from: str | None = None,
                  cancel: CancelFlag | None = None) -> dict:
        """Fill the properties of a flat JSON-schema object, in schema order.

        The JSON syntax is forced; the model only writes values, each constrained to its
        type (string, number, integer, boolean, enum). Enum and boolean values are chosen
        by the model's likelihood of each allowed value. The result always parses and
        matches the schema's types. With copy_from (usually the user's utterance), free
        string values must be whole-word spans of that text."""
        doc = "{"
        result: dict = {}
        for i, (name, prop) in enumerate(json_slots.properties(schema)):
            if cancel is not None and cancel.is_set():
                raise json_slots.Cancelled()
            doc += ("" if i == 0 else ", ") + json.dumps(name) + ": "
            if "enum" in prop or prop.get("type") == "boolean":
                options = prop["enum"] if "enum" in prop else [True, False]
                static, rest = self._prompt(messages, doc)
                value = self._best_option(static + rest, [json.dumps(o) for o in options], options)
            else:
                slot = json_slots.slot_for(prop, copy_from=copy_from)
                # A string slot starts after its opening quote, which is forced too.
                static, rest = self._prompt(messages, doc + ('"' if prop["type"] == "string" else ""))
                copying = copy_from is not None and prop["type"] == "string"
                value, corrected = self._constrained(static, rest, slot, cancel,
                                                     max_fallbacks=0 if copying else self.max_fallbacks)
                if corrected and copying:
                    # The model wanted words the user did not say: rather than steer it token
                    # by token, rank the utterance's word spans by likelihood.
                    value = self._best_span(static + rest, copy_from, slot)
            result[name] = value
            doc += json.dumps(value)
        return result

    def _best_option(self, prompt: list[str], literals: list[str], options: list):
        # Score every option followed by the next JSON delimiter; sum of token log-probs.
        seqs = [prompt + self._tokens(lit) for lit in literals]
        scores = self._generator.score_batch(seqs)
        n = len(prompt)
        totals = [sum(r.log_probs[n - 1:]) for r in scores]  # log_probs[k] scores token k+1
        return options[int(np.argmax(totals))]

    def _best_span(self, prompt: list[str], source: str, slot, keep: int = 4) -> str:
        spans = [c for c in json_slots.word_spans(source) if slot.accepts_value(c)]
        if not spans:
            return ""
        # Prune by the probability of each span's first token, then score the survivors whole.
        logits = np.asarray(self._generator.forward_batch([prompt]))[0, -1]
        first = {c: logits[self._tokenizer.token_to_id(self._tokens(c)[0])] for c in spans}
        shortlist = sorted(spans, key=first.__getitem__, reverse=True)[:keep]
        return self._best_option(prompt, [c + '"' for c in shortlist], shortlist)

    def _constrained(self, static: list[str], rest: list[str], slot: "json_slots.Slot", cancel,
                     max_fallbacks: int) -> tuple[object, bool]:
        """Greedy decoding under a character-level constraint; returns (value, corrected),
        corrected telling whether the model's own choice was overruled at least once.

        Fast path: let CTranslate2 decode greedily with its KV cache and check each token.
        Only when the model's top token breaks the constraint do we compute full logits for
        the sequence (forward_batch) and take the best allowed token, then resume. This is
        exactly constrained greedy decoding: when the unconstrained argmax is allowed, it is
        also the argmax over the allowed tokens."""
        generated: list[int] = []
        fallbacks = 0
        while not slot.done:
            steps = self._generator.generate_tokens(
                rest + [self._vocab[t] for t in generated], static_prompt=static or None,
                cache_static_prompt=True, max_length=slot.max_tokens, sampling_topk=1, end_token=[])
            rejected = False
            try:
                for step in steps:
                    if cancel is not None and cancel.is_set():
                        raise json_slots.Cancelled()
                    if step.token_id in self._special or not slot.feed(self._token_bytes[step.token_id]):
                        rejected = True
                        break
                    generated.append(step.token_id)
                    if slot.done:
                        break
            finally:
                steps.close()
            if slot.done:
                break
            fallbacks += rejected
            if not rejected or fallbacks > max_fallbacks:  # out of tokens or of patience
                slot.force_close()
                break
            logits = np.asarray(self._generator.forward_batch(
                [static + rest + [self._vocab[t] for t in generated]]))[0, -1]
            for tok in np.argsort(-logits)[:4096]:
                if int(tok) not in self._special and slot.feed(self._token_bytes[int(tok)]):
                    generated.append(int(tok))
                    break
            else:
                slot.force_close()
        return slot.value(), fallbacks > 0


class _StreamText:
    """Incremental UTF-8 decoding with stop strings that are never half-emitted."""

    def __init__(self, stop: Sequence[str], on_token: Callable[[str], None] | None):
        self._stop = [s for s in stop if s]
        self._hold = max((len(s) - 1 for s in self._stop), default=0)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._on_token = on_token
        self._text = ""
        self._emitted = 0

    @property
    def value(self) -> str:
        return self._text

    def feed(self, data: bytes) -> bool:
        """Add a token's bytes; True when a stop string was reached (text is cut before it)."""
        self._text += self._decoder.decode(data)
        for s in self._stop:
            cut = self._text.find(s, max(0, self._emitted - len(s)))
            if cut >= 0:
                self._text = self._text[:cut]
                return True
        self._emit(len(self._text) - self._hold)
        return False

    def finish(self, *, emit: bool = True) -> None:
        # Bytes of a character cut off by max_tokens stay in the decoder and are dropped.
        if emit:
            self._emit(len(self._text))

    def _emit(self, upto: int) -> None:
        if upto > self._emitted:
            piece = self._text[self._emitted:upto]
            self._emitted = upto
            if self._on_token is not None:
                self._on_token(piece)
