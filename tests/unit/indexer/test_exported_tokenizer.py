"""The int8 embedders' tokenizer, read from tokenizer.json without transformers, gives what transformers gives:
the same ids, masks, offsets and vocabulary (the chunker's id hashes it, so a change would re-chunk every
document)."""

from __future__ import annotations

import copy
import shutil

import numpy as np
import pytest

from indexer.embedder import resolve_embedder_path
from indexer.exported import FastTokenizer, load_tokenizer

TEXTS = ["How do I delete a bucket?", "", "  ", "caf\u00e9 \u00f1and\u00fa \u6771\u4eac \U0001f642 " * 40,
         "a\tb\nc put-bucket-cors --recursive", "x" * 2000, "word " * 400, "The following command deletes a bucket named x:"]


@pytest.fixture(scope="module")
def model_dir():
    return resolve_embedder_path("all-MiniLM-L6-v2")


def test_the_same_encodings_as_transformers(model_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    ours = load_tokenizer(model_dir)
    assert isinstance(ours, FastTokenizer)
    assert ours.get_vocab() == hf.get_vocab()
    want = hf(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="np")
    got = ours(TEXTS, padding=True, truncation=True, max_length=256, return_tensors="np")
    assert got["input_ids"].shape[1] == 256  # truncated with [CLS] and [SEP] kept, padded to the longest
    for key in want:
        assert np.array_equal(want[key], got[key]), key
    want = hf(TEXTS, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    got = ours(TEXTS, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    assert got["input_ids"] == want["input_ids"]
    assert got["offset_mapping"] == [[tuple(o) for o in row] for row in want["offset_mapping"]]
    assert ours("put-bucket-cors", add_special_tokens=False)["input_ids"] == \
        hf("put-bucket-cors", add_special_tokens=False)["input_ids"]
    assert copy.deepcopy(ours)(TEXTS[:1])["input_ids"] == ours(TEXTS[:1])["input_ids"]


def test_an_export_without_tokenizer_json_falls_back_to_transformers(model_dir, tmp_path):
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    tok = load_tokenizer(tmp_path)
    assert not isinstance(tok, FastTokenizer)
    assert tok("How do I delete a bucket?")["input_ids"] == load_tokenizer(model_dir)("How do I delete a bucket?")["input_ids"]
