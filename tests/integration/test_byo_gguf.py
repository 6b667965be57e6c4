"""Bring your own model (issue 27 items 5 and 6), on GGUF files the project writes itself.

The chat model is written by ragkiln's exporter exactly like a downloaded one is laid out: a Jinja
`tokenizer.chat_template`, CONTROL special tokens for its turns (an end-of-turn token among them), no
ragkiln prompt format or manifest; the server reaches it through llama-cpp-python's Jinja2ChatFormatter,
as any Llama/Qwen/Phi GGUF. Its weights are set by hand so that its greedy answer is known: attention and
MLP write nothing, so the next token depends on the current one only, and the output head maps
<|assistant|> -> the first token of ANSWER -> ... -> its last -> <|end|>. So every answer is ANSWER
whatever the passages, and the tests check the pipeline around it: registration, the template, the
[n] citations resolved to the retrieved passage with document offsets, streaming, the OpenAI client.

The workspace's own tiny LM has no verified held-out perplexity: the quality gate keeps it extractive.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

pytest.importorskip("llama_cpp")

from server.app import create_app  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, CORPUS, READ, READ_KEY, base_workspace, copy_workspace, parse_sse, settings_for  # noqa: E402,F401

QUESTION = "How many volunteers did the vaccine trial enroll?"
ANSWER = "Pfizer trial volunteers [1]."
SPECIAL = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|' + m['role'] + '|>' }}{{ m['content'] }}{{ '<|end|>' }}"
            "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def write_chat_gguf(out_dir: Path) -> Path:
    """A tiny Llama with a chat template and special tokens, whose greedy reply is always ANSWER."""
    import torch

    from quantize.export import LmSource, export_source
    from quantize.types import parse_types
    from trainer.lm.model import ModelArgs, Transformer
    from trainer.lm.tokenizer import train_tokenizer

    tok = train_tokenizer([p.read_text() for p in sorted(CORPUS.iterdir())] * 20, vocab_size=400)
    tok_path = out_dir / "tokenizer.model"
    tok.save(tok_path)
    chain_ids = tok.encode(ANSWER)
    assert len(set(chain_ids)) == len(chain_ids), "the answer's tokens must be distinct for a bigram chain"
    n = tok.vocab_size
    assistant, end = n + SPECIAL.index("<|assistant|>"), n + SPECIAL.index("<|end|>")
    torch.manual_seed(0)
    args = ModelArgs(dim=64, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=n + len(SPECIAL), hidden_dim=96,
                     max_seq_len=4096, tie_embeddings=False)
    model = Transformer(args)
    sd = {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}
    for k in sd:
        if k.endswith(("wo.weight", "w2.weight")):
            sd[k][:] = 0.0  # the residual stream stays the current token's embedding
    emb = sd["tok_embeddings.weight"]  # (V, D)
    head = np.zeros_like(sd["output.weight"])  # (V, D)
    chain = [assistant, *chain_ids, end]
    for cur, nxt in zip(chain, chain[1:]):
        head[nxt] += 10.0 * emb[cur] / np.linalg.norm(emb[cur])
    sd["output.weight"] = head
    src = LmSource(name="tiny-chat", args=args, state_dict=sd, tokenizer_path=tok_path, manifest={},
                   source_sha256="tiny-chat", prompt_format=None, chat_template=TEMPLATE, special_tokens=SPECIAL,
                   eot_token="<|end|>")
    return export_source(src, out_dir / "gguf", parse_types("f16")).path_of("f16")


@pytest.fixture(scope="module")
def chat_gguf(tmp_path_factory) -> Path:
    return write_chat_gguf(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def home(base_workspace, tmp_path_factory, chat_gguf) -> Path:  # noqa: F811
    home = copy_workspace(base_workspace, tmp_path_factory.mktemp("byo") / "ws")
    r = _cli(home, "models", "add", str(chat_gguf), "--name", "tiny-chat", "--json")
    assert r.exit_code == 0, r.output
    added = json.loads(r.output)
    assert added["kind"] == "chat" and added["info"]["chat_template"] and added["info"]["architecture"] == "llama"
    return home


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(settings_for(home, generator_slots=2)), raise_server_exceptions=False) as c:
        yield c


def _cli(home: Path, *args: str):
    from cli.main import app

    return CliRunner().invoke(app, ["--workspace", str(home), *args], env={"HF_HUB_OFFLINE": "1"})



def _check_citations(client, citations: list[dict]) -> None:
    assert [c["rank"] for c in citations] == [1] and citations[0]["doc_id"] == "vaccine.md"
    c = citations[0]
    doc = client.get(f"/v1/documents/{c['doc_id']}", headers=ADMIN).json()["text"]
    assert doc[c["start"]:c["end"]] == c["quote"] and {"pfizer", "trial"} <= set(c["quote"].lower().split())


# ---- the registry ---------------------------------------------------------------------------------
def test_models_add_list_remove(home, chat_gguf, tmp_path):
    listed = json.loads(_cli(home, "models", "list", "--json").output)["models"]
    assert [(m["name"], m["source"], m["kind"]) for m in listed] == [
        ("tiny-lm-q8_0", "workspace", "ragkiln"), ("tiny-chat", "registry", "chat")]
    again = _cli(home, "models", "add", str(chat_gguf), "--name", "tiny-chat")
    assert again.exit_code != 0 and "already served" in again.output
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model")
    bad = _cli(home, "models", "add", str(junk))
    assert bad.exit_code != 0 and "not a GGUF" in bad.output
    other = copy_workspace(home, tmp_path / "ws2")
    assert _cli(other, "models", "remove", "tiny-chat").exit_code == 0
    assert [m["name"] for m in json.loads(_cli(other, "models", "list", "--json").output)["models"]] == ["tiny-lm-q8_0"]


def test_v1_models_lists_every_generator_with_its_gate(client):
    cards = {m["id"]: m for m in client.get("/v1/models", headers=READ).json()["data"]}
    assert cards["tiny-chat"]["kind"] == "generator" and cards["tiny-chat"]["format"] == "chat"
    assert cards["tiny-chat"]["generative"] is True
    own = cards["tiny-lm-q8_0"]
    assert own["format"] == "ragkiln" and own["generative"] is False and "perplexity" in own["gate"]
    state = client.app.state.ragkiln
    assert state.generators["tiny-chat"].runtime.pool_size == 2  # server.generator_slots contexts


# ---- a registered chat model answers with [n] citations --------------------------------------------
def test_answer_with_a_registered_chat_model_cites_its_markers(client):
    r = client.post("/v1/answer", json={"question": QUESTION, "model": "tiny-chat", "max_tokens": 40}, headers=READ)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["model"] == "tiny-chat" and a["mode"] == "generative" and a["notice"] is None
    assert a["answer"].strip() == ANSWER and a["finish_reason"] == "stop"  # stopped on <|end|>, not at max_tokens
    _check_citations(client, a["citations"])
    assert [p["doc_id"] for p in a["passages"] if p["in_prompt"]][0] == "vaccine.md"
    _err = client.post("/v1/answer", json={"question": QUESTION, "model": "gpt-4o"}, headers=READ)
    assert _err.status_code == 404 and "tiny-chat" in _err.json()["error"]["message"]


def test_streamed_answer_from_a_chat_model(client):
    body = {"question": QUESTION, "model": "tiny-chat", "max_tokens": 40, "stream": True}
    with client.stream("POST", "/v1/answer", json=body, headers=READ) as r:
        events = parse_sse(r.read().decode())
    assert [e for e, _ in events][-2:] == ["citations", "done"]
    assert "".join(d["text"] for e, d in events if e == "token").strip() == ANSWER
    _check_citations(client, events[-2][1]["citations"])
    assert events[-1][1]["mode"] == "generative"


def test_chat_completions_through_the_openai_client_plain_and_streamed(client):
    import openai

    oc = openai.OpenAI(base_url="http://testserver/v1", api_key=READ_KEY, http_client=client)
    msgs = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": QUESTION}]
    done = oc.chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=40)
    assert done.model == "tiny-chat" and done.choices[0].message.content.strip() == ANSWER
    assert done.choices[0].finish_reason == "stop"
    extra = done.model_extra or {}
    assert extra["mode"] == "generative"
    _check_citations(client, extra["citations"])
    chunks = list(oc.chat.completions.create(model="tiny-chat", messages=msgs, max_tokens=40, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip() == ANSWER
    last = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    _check_citations(client, (last.model_extra or {})["citations"])
    with pytest.raises(openai.NotFoundError):
        oc.chat.completions.create(model="no-such-model", messages=msgs)


def test_chat_model_without_rag_answers_from_the_conversation(client):
    body = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}], "rag": False, "max_tokens": 40}
    r = client.post("/v1/chat/completions", json=body, headers=READ)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["choices"][0]["message"]["content"].strip() == ANSWER and c["citations"] == []  # [1] cites nothing given


# ---- the gated model never free-generates ---------------------------------------------------------
def test_a_gated_model_answers_extractively_and_says_so(client):
    body = {"question": QUESTION, "k": 3, "max_tokens": 12, "extractive": False}
    r = client.post("/v1/answer", json=body, headers=READ)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["model"] == "tiny-lm-q8_0" and a["mode"] == "extractive" and "perplexity" in a["notice"]
    prompt = " ".join(p["text"] for p in a["passages"] if p["in_prompt"])
    assert a["answer"].strip() and a["answer"].strip() in prompt  # copied, never invented
    default = client.post("/v1/answer", json={**body, "extractive": None}, headers=READ).json()
    assert default["mode"] == "extractive" and default["notice"] is None  # asked for nothing else: nothing to say
    chat = client.post("/v1/chat/completions", json={"model": "ragkiln", "max_tokens": 12,
                                                      "messages": [{"role": "user", "content": QUESTION}]},
                       headers=READ)
    assert chat.status_code == 200, chat.text
    c = chat.json()
    assert c["mode"] == "extractive" and "perplexity" in c["notice"]
    assert c["choices"][0]["message"]["content"].strip() in prompt
    free = client.post("/v1/chat/completions", json={"model": "tiny-lm-q8_0", "rag": False,
                                                      "messages": [{"role": "user", "content": "hi"}]}, headers=READ)
    assert free.status_code == 503 and free.json()["error"]["type"] == "model_unavailable"
    assert "may not generate" in free.json()["error"]["message"]


def test_settings_override_the_gate(home):
    with TestClient(create_app(settings_for(home, generative="tiny-lm-q8_0=true,tiny-chat=false")),
                    raise_server_exceptions=False) as c:
        a = c.post("/v1/answer", json={"question": QUESTION, "max_tokens": 4, "extractive": False}, headers=READ).json()
        assert a["mode"] == "generative" and a["notice"] is None
        r = c.post("/v1/answer", json={"question": QUESTION, "model": "tiny-chat"}, headers=READ)
        assert r.status_code == 503


def test_repeat_penalty_is_the_same_on_torch_and_llama_cpp(tmp_path):
    """Greedy decoding of a random tiny Llama with repeat_penalty 1.5: torch and llama.cpp (F32) agree
    token for token, and the penalty changes what a model stuck in a loop writes."""
    import torch

    from common.sampling import SamplingParams
    from quantize.export import LmSource, export_source
    from quantize.runtime import LlamaCppGenerator
    from quantize.types import parse_types
    from trainer.lm.model import ModelArgs, Transformer
    from trainer.lm.sampling import generate
    from trainer.lm.tokenizer import train_tokenizer

    tok = train_tokenizer([p.read_text() for p in sorted(CORPUS.iterdir())] * 20, vocab_size=400)
    tok.save(tmp_path / "tokenizer.model")
    torch.manual_seed(1)
    args = ModelArgs(dim=64, n_layers=2, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size, hidden_dim=96,
                     max_seq_len=256)
    model = Transformer(args).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(25.0)  # logits of order 1 (init std 0.02 leaves them all near 0 and one token wins every step)
        for layer in model.layers:
            layer.attention_norm.weight.fill_(1.0)
            layer.ffn_norm.weight.fill_(1.0)
        model.norm.weight.fill_(1.0)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    src = LmSource("rp", args, sd, tmp_path / "tokenizer.model", {}, "rp")
    gen = LlamaCppGenerator(export_source(src, tmp_path / "g", parse_types("f32")).path_of("f32"), threads=1)
    try:
        prompt = [tok.bos_id, *tok.encode("The trial enrolled volunteers")]
        outs = {}
        for penalty in (1.0, 1.5):
            p = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True, repeat_penalty=penalty)
            outs[penalty] = generate(model, tok, prompt, p).tokens
            assert gen.generate(prompt, p).tokens == outs[penalty], penalty
        assert outs[1.0] != outs[1.5]
    finally:
        gen.close()
