"""GGUF key/value metadata for a ragkiln LM (pure: builds a list of typed entries, writes nothing).

llama.cpp reads the `llama.*` hyper-parameters and the `tokenizer.ggml.*` vocabulary; the prompt
format is stored twice, verbatim as `ragkiln.prompt_format` and as a Jinja `tokenizer.chat_template`
(system messages = retrieved passages, the last user message = the question) so chat front ends
that read GGUF templates build the exact prompt the model was tuned on. Our model manifest travels
under the `ragkiln.` prefix: its scalar fields one key each, and the whole document as JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from gguf import GGML_QUANT_VERSION, GGUFValueType, Keys

from common.errors import InvalidInput
from quantize.spm_vocab import CONTROL, UNUSED, SpmVocab
from quantize.types import QuantType

ARCH = "llama"
RAGKILN_PREFIX = "ragkiln."


@dataclass(frozen=True)
class KV:
    key: str
    value: Any
    vtype: GGUFValueType
    sub_type: GGUFValueType | None = None  # element type of arrays


@dataclass(frozen=True)
class PromptFormat:
    """The QA prompt's symbols, parsed from a format like `<s><ctx> {context} </ctx><q> {question} <a> {answer}</s>`."""

    bos: bool
    ctx_open: str
    ctx_close: str
    question: str
    answer: str


_FORMAT = re.compile(
    r"(?P<bos><s>)?(?P<open>\S+?)\s*\{context\}\s*(?P<close></[^>\s]+>)(?P<q>\S+?)\s*\{question\}\s*"
    r"(?P<a>\S+?)\s*\{answer\}(?:</s>)?"
)


def parse_prompt_format(fmt: str) -> PromptFormat:
    m = _FORMAT.fullmatch(fmt.strip())
    if not m:
        raise InvalidInput(
            f"prompt format {fmt!r} is not '<s>OPEN {{context}} CLOSE Q {{question}} A {{answer}}</s>'"
        )
    return PromptFormat(bool(m.group("bos")), m.group("open"), m.group("close"), m.group("q"), m.group("a"))


def render_prompt(fmt: str, contexts: list[str] | tuple[str, ...], question: str) -> str:
    """The prompt text (without `<s>`: llama.cpp adds BOS) for passages and a question.

    No literal space goes next to a symbol: the spaces in the recorded format stand for the
    dummy-prefix space SentencePiece adds to each separately encoded segment (trainer.lm.qa builds
    prompts from ids that way), and llama.cpp's tokenizer adds exactly that space after every
    special symbol. So llama.cpp tokenises this text into the ids the model was trained on.
    """
    p = parse_prompt_format(fmt)
    body = "".join(f"{p.ctx_open}{c}{p.ctx_close}" for c in contexts)
    return f"{body}{p.question}{question}{p.answer}"


def chat_template_from_prompt_format(fmt: str) -> str:
    """A Jinja chat template producing `render_prompt`'s text: system messages are the passages,
    the last user message is the question (the answer and EOS are the model's to write)."""
    p = parse_prompt_format(fmt)

    def lit(s: str) -> str:
        return "{{ " + json.dumps(s) + " }}"

    return (
        ("{{ bos_token }}" if p.bos else "")
        + "{%- for m in messages if m['role'] == 'system' -%}"
        + lit(p.ctx_open) + "{{ m['content'] }}" + lit(p.ctx_close)
        + "{%- endfor -%}"
        + "{%- set users = messages | selectattr('role', 'equalto', 'user') | list -%}"
        + lit(p.question) + "{{ users[-1]['content'] if users else '' }}" + lit(p.answer)
    )


def padded_vocab(vocab: SpmVocab, n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types with exactly `n_vocab` entries (the model's embedding rows).

    A model with more rows than the tokenizer has pieces gets UNUSED filler tokens (llama.cpp requires
    one token per row); fewer rows than pieces cannot be served and is an error.
    """
    n = len(vocab.tokens)
    if n_vocab < n:
        raise InvalidInput(f"model has {n_vocab} embedding rows but the tokenizer has {n} pieces")
    extra = n_vocab - n
    return (
        vocab.tokens + [f"<unused{i}>" for i in range(extra)],
        vocab.scores + [-1e9] * extra,
        vocab.types + [UNUSED] * extra,
    )


def _manifest_kvs(manifest: dict[str, Any]) -> list[KV]:
    out = [KV(RAGKILN_PREFIX + "manifest_json", json.dumps(manifest, sort_keys=True, default=str), GGUFValueType.STRING)]
    for k, v in sorted(manifest.items()):
        key = RAGKILN_PREFIX + k
        if isinstance(v, bool):
            out.append(KV(key, v, GGUFValueType.BOOL))
        elif isinstance(v, int):
            out.append(KV(key, v, GGUFValueType.INT64))
        elif isinstance(v, float):
            out.append(KV(key, v, GGUFValueType.FLOAT64))
        elif isinstance(v, str):
            out.append(KV(key, v, GGUFValueType.STRING))
    return out


def build_metadata(
    *,
    name: str,
    args: Any,  # trainer.lm.model.ModelArgs (duck-typed to keep this module torch-free)
    vocab: SpmVocab,
    qtype: QuantType,
    add_bos: bool,
    prompt_format: str | None,
    manifest: dict[str, Any],
    chat_template: str | None = None,
    special_tokens: tuple[str, ...] = (),
    eot_token: str | None = None,
) -> list[KV]:
    """Every key/value of a ragkiln GGUF file except general.architecture (the writer adds that).

    `chat_template` (Jinja, as `GGUFWriter.add_chat_template` stores it) replaces the one derived from
    `prompt_format`; `special_tokens` name embedding rows past the tokenizer's pieces as CONTROL tokens
    (a chat template's turn markers, matched only in text a template rendered), `eot_token` (one of
    them) is the end-of-turn token llama.cpp stops on. With both, a ragkiln export is laid out like a
    released chat model: its chat template and special tokens in the metadata, no prompt format."""
    tokens, scores, types = padded_vocab(vocab, args.vocab_size)
    extra = len(tokens) - len(vocab.tokens)
    if len(special_tokens) > extra:
        raise InvalidInput(f"{len(special_tokens)} special tokens need as many embedding rows past the tokenizer's "
                           f"{len(vocab.tokens)} pieces; the model has {extra}")
    for i, name in enumerate(special_tokens):
        j = len(vocab.tokens) + i
        tokens[j], scores[j], types[j] = name, 0.0, CONTROL
    a = f"{ARCH}."
    U32, F32, STR, BOOL = GGUFValueType.UINT32, GGUFValueType.FLOAT32, GGUFValueType.STRING, GGUFValueType.BOOL
    kvs = [
        KV(Keys.General.NAME, name, STR),
        KV(Keys.General.FILE_TYPE, int(qtype.file_type), U32),
        KV(Keys.General.QUANTIZATION_VERSION, GGML_QUANT_VERSION, U32),
        KV(a + "context_length", args.max_seq_len, U32),
        KV(a + "embedding_length", args.dim, U32),
        KV(a + "block_count", args.n_layers, U32),
        KV(a + "feed_forward_length", args.hidden_dim, U32),
        KV(a + "attention.head_count", args.n_heads, U32),
        KV(a + "attention.head_count_kv", args.n_kv_heads, U32),
        KV(a + "rope.dimension_count", args.dim // args.n_heads, U32),
        KV(a + "rope.freq_base", float(args.rope_theta), F32),
        KV(a + "attention.layer_norm_rms_epsilon", float(args.norm_eps), F32),
        KV(a + "vocab_size", args.vocab_size, U32),
        KV(Keys.Tokenizer.MODEL, "llama", STR),
        KV(Keys.Tokenizer.PRE, "default", STR),
        KV(Keys.Tokenizer.LIST, tokens, GGUFValueType.ARRAY, STR),
        KV(Keys.Tokenizer.SCORES, scores, GGUFValueType.ARRAY, F32),
        KV(Keys.Tokenizer.TOKEN_TYPE, types, GGUFValueType.ARRAY, GGUFValueType.INT32),
        KV(Keys.Tokenizer.UNK_ID, vocab.unk_id, U32),
        KV(Keys.Tokenizer.ADD_BOS, add_bos, BOOL),
        KV(Keys.Tokenizer.ADD_EOS, False, BOOL),
        KV(Keys.Tokenizer.ADD_PREFIX, vocab.add_dummy_prefix, BOOL),
        KV(Keys.Tokenizer.REMOVE_EXTRA_WS, vocab.remove_extra_whitespaces, BOOL),
    ]
    for key, tid in ((Keys.Tokenizer.BOS_ID, vocab.bos_id), (Keys.Tokenizer.EOS_ID, vocab.eos_id),
                     (Keys.Tokenizer.PAD_ID, vocab.pad_id)):
        if tid >= 0:
            kvs.append(KV(key, tid, U32))
    if eot_token is not None:
        if eot_token not in special_tokens:
            raise InvalidInput(f"eot_token {eot_token!r} is not one of the special tokens")
        kvs.append(KV(Keys.Tokenizer.EOT_ID, len(vocab.tokens) + special_tokens.index(eot_token), U32))
    if prompt_format:
        kvs.append(KV(RAGKILN_PREFIX + "prompt_format", prompt_format, STR))
    template = chat_template or (chat_template_from_prompt_format(prompt_format) if prompt_format else None)
    if template:
        kvs.append(KV(Keys.Tokenizer.CHAT_TEMPLATE, template, STR))
    skip = {"prompt_format"}
    if manifest:  # none: a plain chat model (no ragkiln.* keys), as a downloaded GGUF
        kvs += _manifest_kvs({k: v for k, v in manifest.items() if k not in skip})
    return kvs
