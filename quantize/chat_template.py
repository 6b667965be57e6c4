"""A chat model's own prompt: the Jinja chat template in its GGUF metadata, rendered as llama-cpp-python does.

`Llama.create_chat_completion` builds its prompt with `llama_chat_format.Jinja2ChatFormatter` over
`metadata["tokenizer.chat_template"]`, the vocabulary's BOS/EOS texts as `bos_token`/`eos_token`, and
tokenises the result with special tokens parsed and no BOS added (the template writes it). Here the
same, so a request can go through our runtime's context pool, bounded queue and streams instead of
`create_chat_completion`. Generation stops on the template's EOS text and on the end-of-generation
tokens llama.cpp knows (EOS, EOT such as <|eot_id|>, <|im_end|>, <|end|>).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.errors import InvalidInput, ModelUnavailable


class ChatFormat:
    """The chat template of a `quantize.runtime.LlamaCppGenerator`'s model."""

    def __init__(self, gen: Any) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = gen.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelUnavailable(f"{gen.path} carries no chat template (tokenizer.chat_template): it cannot be "
                                   "served as a chat model")
        self._gen = gen
        self.eos_token, self.bos_token = gen.token_text(gen.eos_id), gen.token_text(gen.bos_id)
        self._formatter = Jinja2ChatFormatter(template=template, eos_token=self.eos_token, bos_token=self.bos_token,
                                              add_generation_prompt=True, stop_token_ids=[gen.eos_id])
        eot = gen.metadata.get("tokenizer.ggml.eot_token_id")
        self.stop_tokens: tuple[int, ...] = tuple(dict.fromkeys(
            t for t in (gen.eos_id, int(eot) if eot is not None and str(eot).lstrip("-").isdigit() else -1) if t >= 0))
        self.stop: tuple[str, ...] = (self.eos_token,) if self.eos_token else ()  # what the formatter's `stop` says

    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text; a template that refuses a system role (Gemma's) gets it folded into the
        first user message instead."""
        try:
            res = self._formatter(messages=list(messages))
        except Exception as e:  # noqa: BLE001 - jinja2 errors and the template's own raise_exception
            if not any(m["role"] == "system" for m in messages):
                raise InvalidInput(f"the chat template of {self._gen.path.name} refused the messages: {e}") from e
            res = self._formatter(messages=fold_system(messages))
        return res.prompt

    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of the rendered prompt (special tokens parsed, BOS only where the template wrote it)."""
        return self._gen.tokenize(self.render(messages), add_bos=False, special=True)


def fold_system(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """System messages prepended to the first user message (pure)."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}" if system else m["content"]
            break
    else:
        rest.insert(0, {"role": "user", "content": system})
    return rest
