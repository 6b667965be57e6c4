"""Read a SentencePiece `tokenizer.model` into what a GGUF `llama` vocabulary needs.

The Python `sentencepiece` API cannot tell a user-defined symbol from a normal piece, and its
protobuf module needs the `protobuf` package, so this reads the few ModelProto fields we need
straight from the protobuf wire format (a stable, documented encoding):

    ModelProto      1: pieces (repeated)   2: trainer_spec   3: normalizer_spec
    SentencePiece   1: piece   2: score (float)   3: type (NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4
                    UNUSED=5 BYTE=6; the same numbering as gguf.TokenType)
    TrainerSpec     3: model_type (UNIGRAM=1 BPE=2)  35: byte_fallback  40-43: unk/bos/eos/pad ids
    NormalizerSpec  1: name   3: add_dummy_prefix   4: remove_extra_whitespaces
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from common.errors import ArtifactCorrupt, NotFound

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class SpmVocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]  # gguf.TokenType values
    unk_id: int
    bos_id: int  # -1: none
    eos_id: int
    pad_id: int
    model_type: int  # 1 unigram, 2 bpe
    byte_fallback: bool
    normalizer: str  # "identity" or e.g. "nmt_nfkc"
    add_dummy_prefix: bool
    remove_extra_whitespaces: bool

    def parity_notes(self) -> list[str]:
        """Settings under which llama.cpp's SPM tokenizer is known to differ from SentencePiece."""
        notes = []
        if self.model_type != 2:
            notes.append("SentencePiece model is not BPE; llama.cpp's 'llama' vocab implements BPE merges by score")
        if self.normalizer not in ("identity", ""):
            notes.append(f"normalizer {self.normalizer!r}: llama.cpp applies no Unicode normalisation")
        if self.remove_extra_whitespaces:
            notes.append("remove_extra_whitespaces=True: llama.cpp keeps repeated spaces")
        if not self.byte_fallback:
            notes.append("no byte_fallback: unknown characters become <unk> and do not round-trip")
        return notes


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ArtifactCorrupt("truncated varint in tokenizer.model")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Decode one protobuf message into (field number, wire type, value) triples."""
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            val, i = _varint(buf, i)
            out.append((field, wire, val))
        elif wire == 1:
            out.append((field, wire, buf[i : i + 8]))
            i += 8
        elif wire == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ArtifactCorrupt("truncated field in tokenizer.model")
            out.append((field, wire, buf[i : i + n]))
            i += n
        elif wire == 5:
            out.append((field, wire, buf[i : i + 4]))
            i += 4
        else:
            raise ArtifactCorrupt(f"unsupported protobuf wire type {wire} in tokenizer.model")
    return out


def read_spm_vocab(path: Path) -> SpmVocab:
    """Parse a SentencePiece model file (raises NotFound / ArtifactCorrupt)."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"tokenizer model {path} does not exist")
    top = _fields(path.read_bytes())
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []
    trainer: dict[int, int | bytes] = {}
    normalizer: dict[int, int | bytes] = {}
    for field, _wire, val in top:
        if field == 1 and isinstance(val, bytes):
            piece, score, ptype = "", 0.0, NORMAL
            for f, w, v in _fields(val):
                if f == 1 and isinstance(v, bytes):
                    piece = v.decode("utf-8")
                elif f == 2 and w == 5 and isinstance(v, bytes):
                    score = struct.unpack("<f", v)[0]
                elif f == 3 and isinstance(v, int):
                    ptype = v
            tokens.append(piece)
            scores.append(score)
            types.append(ptype)
        elif field == 2 and isinstance(val, bytes):
            trainer = {f: v for f, _w, v in _fields(val)}
        elif field == 3 and isinstance(val, bytes):
            normalizer = {f: v for f, _w, v in _fields(val)}
    if not tokens:
        raise ArtifactCorrupt(f"{path} holds no SentencePiece pieces")

    def special(kind: int) -> int:
        hits = [i for i, t in enumerate(types) if t == kind]
        return hits[0] if hits else -1

    def piece_id(field: int, default: int) -> int:
        v = trainer.get(field, default)
        v = v if isinstance(v, int) else default
        return v - (1 << 64) if v >= 1 << 63 else v  # int32 -1 is encoded as a 10-byte varint

    name = normalizer.get(1, b"")
    return SpmVocab(
        tokens=tokens,
        scores=scores,
        types=types,
        unk_id=special(UNKNOWN),
        bos_id=piece_id(41, 1),
        eos_id=piece_id(42, 2),
        pad_id=piece_id(43, -1),
        model_type=int(trainer.get(3, 1)) if isinstance(trainer.get(3, 1), int) else 1,
        byte_fallback=bool(trainer.get(35, 0)),
        normalizer=name.decode("utf-8") if isinstance(name, bytes) else "",
        add_dummy_prefix=bool(normalizer.get(3, 1)),
        remove_extra_whitespaces=bool(normalizer.get(4, 1)),
    )
