"""GGUF export -> gguf reader / llama.cpp round trips on a tiny random Llama and a fixture tokenizer."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("llama_cpp")

from gguf import GGMLQuantizationType, GGUFReader  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from common.errors import Busy, ContextOverflow, InvalidInput  # noqa: E402
from quantize.export import export_model, export_source, load_source, read_export  # noqa: E402
from quantize.gguf_names import tensor_name_table  # noqa: E402
from quantize.metadata import render_prompt  # noqa: E402
from quantize.runtime import LlamaCppGenerator, SamplingParams  # noqa: E402
from quantize.service import GgufTokenizer  # noqa: E402
from quantize.spm_vocab import BYTE, CONTROL, UNKNOWN, USER_DEFINED, read_spm_vocab  # noqa: E402
from quantize.types import parse_types  # noqa: E402
from trainer.lm.checkpoint import load_model, save_checkpoint  # noqa: E402
from trainer.lm.init import induction_init  # noqa: E402
from trainer.lm.model import ModelArgs, Transformer  # noqa: E402
from trainer.lm.qa import qa_prompt_ids  # noqa: E402
from trainer.lm.qa_bounds import context_token_ids, extractive_params  # noqa: E402
from trainer.lm.tokenizer import PROMPT_FORMAT, train_tokenizer  # noqa: E402

SENTENCES = [
    "The committee approved the budget for the new research laboratory in March.",
    "Researchers measured the binding affinity of 42 compounds against the target protein.",
    "A retrieval-augmented model reads passages from an index before it answers a question.",
    "Café owners in Zürich reported a 12% rise in visitors — mostly tourists from abroad.",
    "Quantization stores weights in fewer bits: Q8_0 keeps one scale per block of 32 values.",
    "Tabs\tand  double  spaces, newlines\nand emoji 🙂 must survive tokenisation unchanged.",
]
PARITY_TEXTS = SENTENCES + [
    "Unseen words: xylophone quagmire zephyr, digits 3.14159 and 2026-11-22.",
    "Ünïcödé çharacters the tokenizer never saw: Ωμέγα, 漢字, ☃ and \u00a0non-breaking space.",
    "   leading spaces and trailing ones   ",
    "a",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    tok = train_tokenizer(SENTENCES * 10, vocab_size=400)
    torch.manual_seed(0)
    args = ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size, hidden_dim=128,
                     max_seq_len=64, tie_embeddings=False)
    model = Transformer(args)
    with torch.no_grad():  # random but not tiny weights, so logits differ visibly between tokens
        for p in model.parameters():
            p.normal_(0, 0.2 if p.dim() == 2 else 1.0)
    out = tmp_path_factory.mktemp("lm") / "tiny-lm"
    save_checkpoint(out, model, tok)
    return out


@pytest.fixture(scope="module")
def export(ckpt, tmp_path_factory):
    return export_model(ckpt, tmp_path_factory.mktemp("gguf") / "out", parse_types("all"), threads=2)


@pytest.fixture(scope="module")
def f32(export):
    gen = LlamaCppGenerator(export.path_of("f32"), threads=2, logits_all=True)
    yield gen
    gen.close()


def _field(reader: GGUFReader, key: str):
    f = reader.get_field(key)
    assert f is not None, key
    return f.contents()


def test_round_trip_names_shapes_metadata(ckpt, export):
    model, tok, manifest = load_model(ckpt)
    reader = GGUFReader(export.path_of("f32"))
    sd = model.state_dict()
    table = tensor_name_table(sd.keys(), model.args.n_layers, model.args.tie_embeddings)
    tensors = {t.name: t for t in reader.tensors}
    assert set(tensors) == set(table.values())
    for sd_name, gguf_name in table.items():
        t = tensors[gguf_name]
        assert tuple(int(d) for d in t.shape) == tuple(reversed(sd[sd_name].shape))  # ggml order
        assert np.array_equal(np.asarray(t.data).reshape(sd[sd_name].shape), sd[sd_name].numpy())
    a = model.args
    expect = {
        "general.architecture": "llama", "llama.context_length": a.max_seq_len, "llama.embedding_length": a.dim,
        "llama.block_count": a.n_layers, "llama.feed_forward_length": a.hidden_dim,
        "llama.attention.head_count": a.n_heads, "llama.attention.head_count_kv": a.n_kv_heads,
        "llama.rope.dimension_count": a.dim // a.n_heads, "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.unknown_token_id": 0,
        "tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_space_prefix": True,
        "ragkiln.prompt_format": PROMPT_FORMAT, "ragkiln.kind": "lm",
    }
    for key, value in expect.items():
        assert _field(reader, key) == value, key
    assert _field(reader, "llama.rope.freq_base") == pytest.approx(a.rope_theta)
    assert _field(reader, "llama.attention.layer_norm_rms_epsilon") == pytest.approx(a.norm_eps)
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    scores = _field(reader, "tokenizer.ggml.scores")
    assert len(tokens) == len(types) == len(scores) == tok.vocab_size
    assert tokens[:7] == ["<unk>", "<s>", "</s>", "<ctx>", "</ctx>", "<q>", "<a>"]
    assert types[:7] == [UNKNOWN, CONTROL, CONTROL, USER_DEFINED, USER_DEFINED, USER_DEFINED, USER_DEFINED]
    assert types[7:263] == [BYTE] * 256 and tokens[7] == "<0x00>"
    assert scores[300] == pytest.approx(tok.sp.GetScore(300))
    assert json.loads(_field(reader, "ragkiln.manifest_json"))["model_args"] == a.to_dict()
    assert "{{ bos_token }}" in _field(reader, "tokenizer.chat_template")


def test_quantized_tensors_decode_close_to_the_weights(ckpt, export):
    model, _, _ = load_model(ckpt)
    w = model.state_dict()["layers.0.attention.wq.weight"].numpy()
    for name, qtype, tol in (("q8_0", GGMLQuantizationType.Q8_0, 0.01), ("q4_0", GGMLQuantizationType.Q4_0, 0.15)):
        t = next(t for t in GGUFReader(export.path_of(name)).tensors if t.name == "blk.0.attn_q.weight")
        assert t.tensor_type == qtype
        back = dequantize(np.asarray(t.data), qtype).reshape(w.shape)
        assert np.abs(back - w).max() < tol * np.abs(w).max() * 4
        norm = next(t for t in GGUFReader(export.path_of(name)).tensors if t.name == "blk.0.attn_norm.weight")
        assert norm.tensor_type == GGMLQuantizationType.F32  # 1-D tensors stay F32


def test_k_quant_fallbacks_are_recorded(export):
    # dim 64 and hidden 128 are not multiples of 256: llama.cpp falls back for every 2-D tensor
    for name in ("q4_k_m", "q5_k_m", "q6_k"):
        f = next(f for f in export.files if f.type == name)
        assert len(f.fallbacks) == 7 * 2 + 2  # 2 layers x 7 matrices + token_embd + output
        assert "blk.0.ffn_down.weight" in " ".join(f.fallbacks)
    manifest = json.loads((Path(export.out_dir) / "manifest.json").read_text())
    assert manifest["types"]["q4_k_m"]["fallbacks"] == next(f.fallbacks for f in export.files if f.type == "q4_k_m")
    assert manifest["source_sha256"] == export.source_sha256


def test_direct_type_refuses_a_row_size_it_cannot_take(ckpt, tmp_path):
    _, tok, _ = load_model(ckpt)
    args = ModelArgs(dim=48, n_layers=1, n_heads=4, n_kv_heads=4, vocab_size=tok.vocab_size, hidden_dim=64,
                     max_seq_len=32)
    save_checkpoint(tmp_path / "odd", Transformer(args), tok)
    with pytest.raises(InvalidInput, match=r"q8_0 .*multiple of 32; 7 tensor\(s\).*blk.0.attn_k.weight \(row 48\)"):
        export_model(tmp_path / "odd", tmp_path / "gguf", parse_types("f16,q8_0"))
    assert not (tmp_path / "gguf").exists()  # nothing written
    r = export_model(tmp_path / "odd", tmp_path / "gguf", parse_types("f16"))
    assert [f.type for f in r.files] == ["f16"]


def test_re_export_keeps_other_types_of_the_same_weights(ckpt, tmp_path):
    src = load_source(ckpt)
    export_source(src, tmp_path / "g", parse_types("f16"))
    r = export_source(src, tmp_path / "g", parse_types("q8_0"))
    assert [f.type for f in r.files] == ["f16", "q8_0"]
    assert [f.type for f in read_export(tmp_path / "g").files] == ["f16", "q8_0"]


def test_spm_vocab_reads_piece_types(ckpt):
    v = read_spm_vocab(ckpt / "tokenizer.model")
    assert (v.unk_id, v.bos_id, v.eos_id, v.pad_id) == (0, 1, 2, -1)
    assert v.model_type == 2 and v.byte_fallback and v.normalizer == "identity"
    assert v.add_dummy_prefix and not v.remove_extra_whitespaces
    assert v.parity_notes() == []


def test_tokenizer_parity_with_sentencepiece(ckpt, f32):
    _, tok, _ = load_model(ckpt)
    for text in PARITY_TEXTS:
        assert f32.tokenize(text) == [tok.bos_id, *tok.encode(text)], text


def test_prompt_format_text_tokenises_to_the_training_ids(ckpt, f32):
    _, tok, _ = load_model(ckpt)
    ctxs = [SENTENCES[0], SENTENCES[3]]
    q = "Who approved the budget?"
    assert f32.tokenize(render_prompt(PROMPT_FORMAT, ctxs, q)) == qa_prompt_ids(tok, ctxs, q, 10_000)


def test_f32_logits_and_greedy_generation_match_torch(ckpt, f32):
    model, tok, _ = load_model(ckpt)
    from trainer.lm.sampling import generate

    for text in SENTENCES[:3]:
        ids = [tok.bos_id, *tok.encode(text)][:64]
        with torch.no_grad():
            ref = model(torch.tensor([ids]))[0][0].numpy()
        assert np.abs(f32.logits(ids) - ref).max() < 1e-3
        prompt = ids[:8]
        want = generate(model, tok, prompt, SamplingParams(max_tokens=24, temperature=0.0)).tokens
        got = f32.generate(prompt, SamplingParams(max_tokens=24, temperature=0.0)).tokens
        assert got == want
        timed = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)  # as the speed check runs
        want = generate(model, tok, prompt, timed).tokens
        assert f32.generate(prompt, timed).tokens == want and len(want) == 24


def test_induction_initialised_model_with_slow_rope_matches_torch(tmp_path):
    """lm.init = induction: rope_theta 1e6 and a final norm weight of 8 survive export (freq_base, norm)."""
    tok = train_tokenizer(SENTENCES * 10, vocab_size=400)
    torch.manual_seed(0)
    model = Transformer(ModelArgs(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size,
                                  hidden_dim=128, max_seq_len=64, rope_theta=1e6))
    induction_init(model)
    save_checkpoint(tmp_path / "lm", model, tok)
    out = export_model(tmp_path / "lm", tmp_path / "gguf", parse_types("f32"), threads=2)
    gen = LlamaCppGenerator(out.path_of("f32"), threads=2, logits_all=True)
    try:
        for text in SENTENCES[:3]:
            ids = [tok.bos_id, *tok.encode(text)][:64]
            with torch.no_grad():
                ref = model(torch.tensor([ids]))[0][0].numpy()
            assert np.abs(gen.logits(ids) - ref).max() < 1e-3 * max(1.0, float(np.abs(ref).max()))
    finally:
        gen.close()


def test_extractive_decoding_copies_the_same_span_as_torch(ckpt, f32):
    from trainer.lm.sampling import generate

    model, tok, _ = load_model(ckpt)
    for text in SENTENCES[:3]:
        ids = qa_prompt_ids(tok, [text], "Who approved it?", 10_000)  # the test model's context is 64
        source = context_token_ids(ids, tok)
        for max_tokens in (1, 12):
            params = SamplingParams(max_tokens=max_tokens, temperature=0.0, extract_from=source)
            got = f32.generate(ids, params).tokens
            assert got == generate(model, tok, ids, params).tokens
            assert any(list(source[j : j + len(got)]) == got for j in range(len(source)))  # a span of the passages
        asked = qa_prompt_ids(tok, [text], " ".join(text.split()[:3]) + "?", 36)  # the passage's own words
        params = extractive_params(SamplingParams(max_tokens=12, temperature=0.0), asked, tok)
        assert params.extract_avoid and params.extract_ends
        assert f32.generate(asked, params).tokens == generate(model, tok, asked, params).tokens
        searched = replace(params, extract_search="best")
        best = generate(model, tok, asked, searched).tokens
        assert best and f32.generate(asked, searched).tokens == best  # span search picks the same span
        served = extractive_params(SamplingParams(max_tokens=12, temperature=0.0), asked, GgufTokenizer(f32))
        assert served == params  # the server reads word edges from the GGUF vocabulary: the same bounds
    sampled = f32.generate(ids, SamplingParams(max_tokens=12, temperature=1.0, seed=3, extract_from=source)).tokens
    assert any(list(source[j : j + len(sampled)]) == sampled for j in range(len(source)))
    assert f32.generate([1, 5, 6], SamplingParams(max_tokens=4, extract_from=())).tokens == []  # nothing to copy


def test_prompt_too_long_is_a_context_overflow(f32):
    with pytest.raises(ContextOverflow, match="64"):
        f32.generate(list(range(3, 3 + 64)), SamplingParams(max_tokens=4))
    g = f32.generate([1] + [300] * 60, SamplingParams(max_tokens=50, temperature=0.0))
    assert len(g.tokens) <= 3 and (g.finish_reason == "length" or len(g.tokens) < 3)  # capped to what fits


def test_stream_pieces_join_to_the_text_and_stop_strings_cut(export):
    gen = LlamaCppGenerator(export.path_of("q8_0"), threads=1)
    try:
        p = SamplingParams(max_tokens=30, temperature=0.0)
        full = gen.generate("The committee", p)
        stream = gen.stream("The committee", p)
        assert "".join(stream) == full.text and stream.result.tokens == full.tokens
        stop = full.text[len(full.text) // 2 : len(full.text) // 2 + 3]
        if stop.strip():
            cut = gen.generate("The committee", SamplingParams(max_tokens=30, temperature=0.0, stop=(stop,)))
            assert cut.text == full.text[: full.text.find(stop)] and cut.finish_reason == "stop"
        seeded = [gen.generate("The", SamplingParams(max_tokens=10, temperature=1.0, top_p=0.9, seed=7)).tokens
                  for _ in range(2)]
        assert seeded[0] == seeded[1]
    finally:
        gen.close()


def test_full_pool_refuses_with_busy_and_health_never_blocks(export):
    gen = LlamaCppGenerator(export.path_of("f32"), threads=1, pool_size=1, queue_size=0)
    try:
        s = gen.stream("The", SamplingParams(max_tokens=40, temperature=0.0))
        next(s)  # holds the only context
        with pytest.raises(Busy):
            gen.stream("The", SamplingParams(max_tokens=4))
        t0 = time.perf_counter()
        assert gen.health()["busy"] == 1
        assert time.perf_counter() - t0 < 0.5
        s.close()
        assert gen.health()["busy"] == 0
        results = []
        gen2 = LlamaCppGenerator(export.path_of("f32"), threads=1, pool_size=1, queue_size=4)
        threads = [threading.Thread(target=lambda: results.append(
            gen2.generate("The", SamplingParams(max_tokens=8, temperature=0.0)).tokens)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(results) == 3 and results[0] == results[1] == results[2]  # queued, served one by one
        gen2.close()
    finally:
        gen.close()


def test_waiting_past_the_timeout_is_busy_and_frees_its_slot(export):
    gen = LlamaCppGenerator(export.path_of("q8_0"), threads=1, pool_size=1, queue_size=1, acquire_timeout_s=0.2)
    try:
        s1 = gen.stream("The", SamplingParams(max_tokens=40, temperature=0.0))
        next(s1)
        s2 = gen.stream("The", SamplingParams(max_tokens=4))  # admitted to the queue
        with pytest.raises(Busy):
            next(s2)
        s2.close()
        s1.close()
        for _ in range(3):  # no slot leaked: the queue still admits and serves
            assert gen.generate("The", SamplingParams(max_tokens=2, temperature=0.0)).tokens
    finally:
        gen.close()


def test_gguf_eval_matches_torch_perplexities_on_the_same_dataset(ckpt, f32, tmp_path):
    from quantize.service import gguf_perplexities
    from trainer.lm.data import DataSpec, LmDataset, build_dataset
    from trainer.lm.service import perplexities

    model, tok, _ = load_model(ckpt)
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class C:
        doc_id: str
        text: str

    chunks = [C(str(i), s) for i, s in enumerate(SENTENCES)]
    spec = DataSpec(target_len=24, n_neighbours=1, neighbour_len=12)
    other = {c.doc_id: SENTENCES[(i + 1) % len(SENTENCES)] for i, c in enumerate(chunks)}
    build_dataset(chunks, tok, tmp_path / "sp", spec, lambda c: [other[c.doc_id]])
    build_dataset(chunks, GgufTokenizer(f32), tmp_path / "ll", spec, lambda c: [other[c.doc_id]])
    sp, ll = LmDataset(tmp_path / "sp"), LmDataset(tmp_path / "ll")
    assert np.array_equal(sp.targets, ll.targets) and np.array_equal(sp.prefix, ll.prefix)
    want = perplexities(model, sp)
    got = gguf_perplexities(f32, ll)
    assert got["tokens"] == want["tokens"]
    assert got["ppl_no_context"] == pytest.approx(want["ppl_no_context"], rel=1e-4)
    assert got["ppl_with_context"] == pytest.approx(want["ppl_with_context"], rel=1e-4)
