"""Read a Llama-architecture GGUF file: hyperparameters, weights, tokenizer, chat format.

Only the pieces an inference engine needs, with no torch or transformers. The
weights come out dequantized to float32 in the GGUF (llama.cpp) layout: Q and K
rows are ordered for *interleaved* rotary embeddings (pairs of adjacent
dimensions), because llama.cpp's converter permutes them from the Hugging Face
layout. Engines must use the interleaved rotary form, not rotate-half.
"""

from __future__ import annotations

import dataclasses
import pathlib
import re
from collections.abc import Mapping, Sequence

import numpy as np

_CONTROL_TOKEN = 3  # tokenizer.ggml.token_type value for special/control tokens


@dataclasses.dataclass(frozen=True, kw_only=True)
class LlamaHParams:
    n_layers: int
    d_model: int
    d_ff: int
    n_heads: int
    n_kv_heads: int
    rope_base: float
    rms_eps: float
    vocab_size: int
    context_length: int
    tied_embeddings: bool

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


@dataclasses.dataclass(frozen=True, kw_only=True)
class ChatFormat:
    """ChatML, the format SmolLM2's template implements (<|im_start|>role\\n...<|im_end|>\\n)."""

    default_system: str | None
    end_token: str = "<|im_end|>"

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        return "".join(self.split(messages, add_generation_prompt=add_generation_prompt))

    def split(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> tuple[str, str]:
        """(system turn, everything after it): the first part is what stays the same
        from one turn of a conversation to the next."""
        messages = list(messages)
        if messages and messages[0]["role"] == "system":
            system = self._turn(messages.pop(0))
        elif self.default_system is not None:
            system = self._turn({"role": "system", "content": self.default_system})
        else:
            system = ""
        rest = "".join(self._turn(m) for m in messages)
        if add_generation_prompt:
            rest += "<|im_start|>assistant\n"
        return system, rest

    @staticmethod
    def _turn(message: Mapping[str, str]) -> str:
        return f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"


class GGUFLlama:
    """A parsed GGUF file. Tensors are memory-mapped; nothing is dequantized until asked."""

    def __init__(self, path: str | pathlib.Path):
        import gguf  # imported here: only conversion and the numpy runner need it

        self.path = pathlib.Path(path)
        self._gguf = gguf
        self._reader = gguf.GGUFReader(self.path)
        arch = self.field("general.architecture")
        if arch != "llama":
            raise ValueError(f"{self.path.name}: architecture {arch!r} is not 'llama'")
        self._tensors = {t.name: t for t in self._reader.tensors}
        self.hparams = LlamaHParams(
            n_layers=int(self.field("llama.block_count")),
            d_model=int(self.field("llama.embedding_length")),
            d_ff=int(self.field("llama.feed_forward_length")),
            n_heads=int(self.field("llama.attention.head_count")),
            n_kv_heads=int(self.field("llama.attention.head_count_kv")),
            rope_base=float(self.field("llama.rope.freq_base", 10000.0)),
            rms_eps=float(self.field("llama.attention.layer_norm_rms_epsilon")),
            vocab_size=len(self.field("tokenizer.ggml.tokens")),
            context_length=int(self.field("llama.context_length")),
            tied_embeddings="output.weight" not in self._tensors,
        )
        if self.field("llama.rope.scaling.type", "none") not in ("none", None):
            raise ValueError("rope scaling is not supported")

    def field(self, key: str, default=None):
        f = self._reader.fields.get(key)
        return default if f is None else f.contents()

    # -- weights -------------------------------------------------------------

    def tensor(self, name: str) -> np.ndarray:
        """Dequantized float32 tensor, numpy layout ([out, in] for matrices)."""
        t = self._tensors[name]
        gq = self._gguf.GGMLQuantizationType
        if t.tensor_type == gq.F32:
            arr = np.asarray(t.data, dtype=np.float32)
        elif t.tensor_type in (gq.F16, gq.BF16):
            arr = self._gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        else:
            arr = self._gguf.quants.dequantize(t.data, t.tensor_type)
        return arr.reshape(tuple(int(d) for d in reversed(t.shape)))

    def layer_tensors(self, i: int) -> dict[str, np.ndarray]:
        names = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")
        return {n: self.tensor(f"blk.{i}.{n}.weight") for n in names}

    def output_weight(self, embeddings: np.ndarray | None = None) -> np.ndarray:
        if self.hparams.tied_embeddings:
            return embeddings if embeddings is not None else self.tensor("token_embd.weight")
        return self.tensor("output.weight")

    # -- tokenizer -----------------------------------------------------------

    @property
    def tokens(self) -> list[str]:
        return list(self.field("tokenizer.ggml.tokens"))

    def special_token_ids(self) -> list[int]:
        types = self.field("tokenizer.ggml.token_type")
        return [i for i, t in enumerate(types) if t == _CONTROL_TOKEN]

    def tokenizer_json(self) -> str:
        """A Hugging Face `tokenizers` JSON for the GGUF's byte-level BPE vocabulary."""
        import json

        if self.field("tokenizer.ggml.model") != "gpt2":
            raise ValueError("only byte-level BPE ('gpt2') vocabularies are supported")
        pre = self.field("tokenizer.ggml.pre", "default")
        if pre not in ("smollm", "starcoder", "refact", "gpt-2", "gpt2", "default"):
            raise ValueError(f"unsupported pre-tokenizer {pre!r}")
        tokens = self.tokens
        specials = self.special_token_ids()
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        pre_tokenizers = [byte_level]
        if pre in ("smollm", "starcoder", "refact"):
            # llama.cpp splits every digit on its own before the GPT-2 regex for these.
            pre_tokenizers.insert(0, {"type": "Digits", "individual_digits": True})
        spec = {
            "version": "1.0",
            "added_tokens": [
                {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}
                for i in specials
            ],
            "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": pre_tokenizers},
            "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            "model": {
                "type": "BPE",
                "vocab": {tok: i for i, tok in enumerate(tokens)},
                "merges": [m.split(" ", 1) for m in self.field("tokenizer.ggml.merges")],
                "dropout": None,
                "unk_token": None,
                "continuing_subword_prefix": None,
                "end_of_word_suffix": None,
                "fuse_unk": False,
                "byte_fallback": False,
                "ignore_merges": False,
            },
        }
        return json.dumps(spec, ensure_ascii=False)

    def chat_format(self) -> ChatFormat:
        template = self.field("tokenizer.chat_template", "") or ""
        if "<|im_start|>" not in template:
            raise ValueError("the GGUF's chat template is not ChatML; add a renderer for it")
        # SmolLM2's template inserts a default system prompt when none is given.
        m = re.search(r"<\|im_start\|>system\n(.*?)<\|im_end\|>", template, re.S)
        return ChatFormat(default_system=m.group(1) if m else None)

    def eos_token(self) -> str:
        return self.tokens[int(self.field("tokenizer.ggml.eos_token_id"))]


def token_bytes_table(tokens: Sequence[str]) -> list[bytes]:
    """The raw bytes each byte-level BPE token stands for (special tokens: their text)."""
    table = _unicode_to_byte()
    out = []
    for tok in tokens:
        try:
            out.append(bytes(table[ch] for ch in tok))
        except KeyError:  # an added/special token, not byte-encoded
            out.append(tok.encode())
    return out


def _unicode_to_byte() -> dict[str, int]:
    # GPT-2 byte-level BPE shows printable bytes as themselves and moves the other
    # 68 byte values to code points 256 and up, in byte order.
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping = {chr(b): b for b in printable}
    extra = 0
    for b in range(256):
        if b not in printable:
            mapping[chr(256 + extra)] = b
            extra += 1
    return mapping
