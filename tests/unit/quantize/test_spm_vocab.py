import struct

import pytest

from common.errors import ArtifactCorrupt, NotFound
from quantize.spm_vocab import BYTE, CONTROL, NORMAL, UNKNOWN, USER_DEFINED, read_spm_vocab


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _field(num: int, wire: int, payload: bytes) -> bytes:
    key = _varint(num << 3 | wire)
    return key + (_varint(len(payload)) + payload if wire == 2 else payload)


def _piece(text: str, score: float, ptype: int | None) -> bytes:
    body = _field(1, 2, text.encode()) + _field(2, 5, struct.pack("<f", score))
    if ptype is not None:
        body += _field(3, 0, _varint(ptype))
    return _field(1, 2, body)


def _model(tmp_path, extra: bytes = b""):
    pieces = (_piece("<unk>", 0, UNKNOWN) + _piece("<s>", 0, CONTROL) + _piece("</s>", 0, CONTROL)
              + _piece("<ctx>", 0, USER_DEFINED) + _piece("<0x00>", 0, BYTE) + _piece("\u2581the", -1.5, None))
    trainer = _field(3, 0, _varint(2)) + _field(35, 0, _varint(1)) + _field(43, 0, _varint(-1))
    normalizer = _field(1, 2, b"identity") + _field(3, 0, _varint(1)) + _field(4, 0, _varint(0))
    p = tmp_path / "tokenizer.model"
    p.write_bytes(pieces + _field(2, 2, trainer) + _field(3, 2, normalizer) + extra)
    return p


def test_reads_pieces_types_scores_and_specs(tmp_path):
    v = read_spm_vocab(_model(tmp_path))
    assert v.tokens == ["<unk>", "<s>", "</s>", "<ctx>", "<0x00>", "\u2581the"]
    assert v.types == [UNKNOWN, CONTROL, CONTROL, USER_DEFINED, BYTE, NORMAL]  # absent type = NORMAL
    assert v.scores[-1] == pytest.approx(-1.5)
    assert (v.unk_id, v.bos_id, v.eos_id, v.pad_id) == (0, 1, 2, -1)  # defaults 1/2, pad -1 as 10-byte varint
    assert v.model_type == 2 and v.byte_fallback and v.normalizer == "identity"
    assert v.add_dummy_prefix and not v.remove_extra_whitespaces and v.parity_notes() == []


def test_truncated_or_missing_files_are_clear_errors(tmp_path):
    p = _model(tmp_path)
    p.write_bytes(p.read_bytes()[:-3])
    with pytest.raises(ArtifactCorrupt):
        read_spm_vocab(p)
    with pytest.raises(NotFound):
        read_spm_vocab(tmp_path / "nope.model")
    (tmp_path / "empty.model").write_bytes(b"")
    with pytest.raises(ArtifactCorrupt, match="no SentencePiece pieces"):
        read_spm_vocab(tmp_path / "empty.model")
