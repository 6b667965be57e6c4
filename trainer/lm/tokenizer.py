"""SentencePiece BPE tokenizer with byte fallback, trained on the corpus and saved with the model.

Why these options: identity normalisation and no whitespace collapsing so text round-trips exactly;
byte fallback so no input is ever <unk>; a dummy-prefix space like Llama's tokenizer, which is what
llama.cpp's SPM vocabulary expects (`tokenizer.ggml.add_space_prefix = true`).

Vocabulary layout (fixed ids, the GGUF exporter relies on them):
    0  <unk>    (type UNKNOWN)
    1  <s>      BOS (type CONTROL), prepended to every sequence
    2  </s>     EOS (type CONTROL), ends every answer
    3  <ctx>    USER_DEFINED: opens one retrieved context passage
    4  </ctx>   USER_DEFINED: closes it
    5  <q>      USER_DEFINED: starts the question
    6  <a>      USER_DEFINED: starts the answer
    7.. 262     <0x00>..<0xFF> byte pieces (type BYTE)
    then the learned BPE merges and characters (type NORMAL)
No padding token: batches are right-padded with target -1, which the loss ignores.

Prompt format (recorded in every LM manifest as `prompt_format`; see `PROMPT_FORMAT`):
    <s><ctx> passage 1 </ctx><ctx> passage 2 </ctx><q> question <a> answer</s>
Exact ids (trainer.lm.qa.qa_prompt_ids; every text segment is encoded on its own, so each starts
with SentencePiece's dummy-prefix space, and no space piece sits before a closing symbol):
    [1] + ([3] + sp(passage)[:passage_len] + [4]) * n_passages + [5] + sp(question)[:64] + [6]
and the answer target is sp(answer) + [2].
Plain language-model training uses `<s>` + text; retrieval-augmented training uses
`<s>` + `<ctx> neighbour </ctx>`... + text (same per-segment encoding).  The special symbols are user-defined pieces, so the
literal strings "<ctx>" etc. in raw text also encode to them (and decode back to the same text).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from common.errors import ArtifactCorrupt, InvalidInput, NotFound

log = logging.getLogger(__name__)

CTX_OPEN, CTX_CLOSE, QUESTION, ANSWER = "<ctx>", "</ctx>", "<q>", "<a>"
SPECIAL_SYMBOLS = (CTX_OPEN, CTX_CLOSE, QUESTION, ANSWER)
UNK_ID, BOS_ID, EOS_ID = 0, 1, 2
PROMPT_FORMAT = "<s>{ctx_open} {{context}} {ctx_close}{q} {{question}} {a} {{answer}}</s>".format(
    ctx_open=CTX_OPEN, ctx_close=CTX_CLOSE, q=QUESTION, a=ANSWER
)
MIN_VOCAB = 300  # 7 special + 256 bytes + a few merges
_BYTE_PIECE = re.compile(r"^<0x([0-9A-F]{2})>$")


class Tokenizer:
    """Thin wrapper over a SentencePiece model with the ids and specials ragkiln uses."""

    def __init__(self, model_proto: bytes) -> None:
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as e:  # sentencepiece raises RuntimeError/OSError variants
            raise ArtifactCorrupt(f"not a SentencePiece model: {e}") from e
        self.proto = model_proto
        for sym, want in zip(SPECIAL_SYMBOLS, range(3, 7)):
            if self.sp.piece_to_id(sym) != want:
                raise ArtifactCorrupt(f"tokenizer lacks special symbol {sym} at id {want}")
        self.ctx_open, self.ctx_close, self.q_id, self.a_id = (self.sp.piece_to_id(s) for s in SPECIAL_SYMBOLS)
        self._byte_of = {}
        for i in range(self.vocab_size):
            m = _BYTE_PIECE.match(self.sp.id_to_piece(i)) if self.sp.is_byte(i) else None
            if m:
                self._byte_of[i] = int(m.group(1), 16)

    @classmethod
    def load(cls, path: Path) -> "Tokenizer":
        path = Path(path)
        if not path.exists():
            raise NotFound(f"tokenizer model {path} does not exist")
        return cls(path.read_bytes())

    def save(self, path: Path) -> None:
        Path(path).write_bytes(self.proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return BOS_ID

    @property
    def eos_id(self) -> int:
        return EOS_ID

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        return list(self.sp.encode(text, out_type=int))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids; invalid UTF-8 from byte pieces becomes U+FFFD (use decode_bytes to keep it)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def encode_bytes(self, data: bytes) -> list[int]:
        """Ids for any byte string: valid UTF-8 runs go through BPE, other bytes become byte pieces."""
        text = data.decode("utf-8", errors="surrogateescape")
        ids: list[int] = []
        for part in re.split(r"([\udc80-\udcff]+)", text):
            if not part:
                continue
            if "\udc80" <= part[0] <= "\udcff":
                raw = part.encode("utf-8", errors="surrogateescape")
                ids.extend(self.sp.piece_to_id(f"<0x{b:02X}>") for b in raw)
            else:
                ids.extend(self._encode_no_prefix(part) if ids else self.encode(part))
        return ids

    def _encode_no_prefix(self, text: str) -> list[int]:
        # A dummy-prefix space is added to every encode call; drop it for continuation segments.
        ids = self.encode("\x00" + text)  # NUL has no merges, so it stays its own piece(s)
        nul = self.encode("\x00")
        return ids[len(nul):]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Exact inverse of encode/encode_bytes (the dummy-prefix space is removed at the start)."""
        out = io.BytesIO()
        first = True
        for i in ids:
            i = int(i)
            if i in (BOS_ID, EOS_ID):
                continue
            piece = self.piece_bytes(i)
            if first and i not in self._byte_of and piece.startswith(b" "):
                piece = piece[1:]
            out.write(piece)
            first = False
        return out.getvalue()

    def piece_bytes(self, i: int) -> bytes:
        """The bytes token `i` adds inside a text (a word-initial piece starts with b" ")."""
        i = int(i)
        if i in (BOS_ID, EOS_ID):
            return b""
        if i in self._byte_of:
            return bytes([self._byte_of[i]])
        return self.sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")

    def describe(self) -> dict[str, object]:
        """What the manifest records about the tokenizer."""
        return {
            "type": "sentencepiece-bpe",
            "vocab_size": self.vocab_size,
            "byte_fallback": True,
            "add_dummy_prefix": True,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "unk_id": UNK_ID,
            "special_symbols": list(SPECIAL_SYMBOLS),
        }


def train_tokenizer(texts: Iterable[str], vocab_size: int = 8000, max_sentence_length: int = 16384) -> Tokenizer:
    """Train a BPE tokenizer on texts; shrinks the vocabulary when the corpus is too small for it."""
    if vocab_size < MIN_VOCAB:
        raise InvalidInput(f"vocab_size {vocab_size} is below the minimum {MIN_VOCAB} (bytes + specials)")
    sentences = [t for t in texts if t and t.strip()]
    if not sentences:
        raise InvalidInput("cannot train a tokenizer on an empty corpus")
    # SentencePiece reads "sentences"; lines longer than max_sentence_length are split, not dropped.
    lines: list[str] = []
    for t in sentences:
        for line in t.split("\n"):
            for s in range(0, len(line), max_sentence_length // 4):
                if line[s : s + max_sentence_length // 4].strip():
                    lines.append(line[s : s + max_sentence_length // 4])
    size = vocab_size
    while True:
        try:
            return Tokenizer(_train(lines, size, max_sentence_length))
        except RuntimeError as e:
            m = re.search(r"value <= (\d+)", str(e))
            if "Vocabulary size too high" not in str(e) or not m or size <= MIN_VOCAB:
                raise InvalidInput(f"tokenizer training failed: {e}") from e
            new = max(MIN_VOCAB, int(m.group(1)))
            log.warning("corpus too small for vocab %d; training with %d", size, new)
            size = new


def _train(lines: list[str], vocab_size: int, max_sentence_length: int) -> bytes:
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        max_sentence_length=max_sentence_length,
        user_defined_symbols=list(SPECIAL_SYMBOLS),
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        pad_id=-1,
        input_sentence_size=2_000_000,
        shuffle_input_sentence=True,
        num_threads=2,
        minloglevel=2,
    )
    return model.getvalue()
