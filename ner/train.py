"""Training a spaCy NER pipeline from CoNLL or JSONL files (`ragkiln ner train`).

A plain loop over `nlp.update` so that every epoch ends with a dev evaluation (the conlleval metric
of `ner.evaluate`), the best epoch is kept, and a wall-clock budget is honoured. Two starting points:

- from scratch, with a tok2vec preset (`efficiency`: spaCy's stock CNN; `chars`: wider, with
  character embeddings of each word's first and last letters, which helps on rare names);
- from a pretrained pipeline (`base`, e.g. en_core_web_sm): a fresh `ner` with the same
  architecture whose tok2vec and hidden layer start from the base's NER weights (transfer
  learning; only the output layer, sized for the new labels, starts random).

The output is a spaCy pipeline directory (+ manifest.json, training.jsonl, training.png) that
`ner.model` and `ragkiln ner eval --model` load.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.artifacts import atomic_artifact_dir, make_manifest
from common.console import bar_interval
from common.errors import InvalidInput
from common.jsonlog import JsonlLog
from ner.evaluate import evaluate_examples
from ner.readers import MisalignedPolicy, NerExample, labels_of, read_examples, to_docs
from ner.split import split_held_out
from ner.vectors import ppmi_svd_vectors, set_vectors

log = logging.getLogger(__name__)

MODEL_KIND = "ner_model"
FORMAT_VERSION = 1
Preset = Literal["efficiency", "chars", "wide"]


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes a training run (stored in the model's manifest)."""

    preset: Preset = "efficiency"  # tok2vec of a from-scratch run (base None)
    base: str | None = "auto"  # pretrained pipeline whose ner weights start the run; None: from scratch
    labels: tuple[str, ...] = ()  # restrict to these labels (others are dropped and counted)
    max_epochs: int = 30
    patience: int = 5  # epochs without dev improvement before stopping
    max_minutes: float = 40.0
    dropout: float = 0.1
    learn_rate: float = 0.001
    batch_words_start: int = 100
    batch_words_stop: int = 1000
    seed: int = 0
    misaligned: MisalignedPolicy = "error"
    static_vectors: bool = False  # PPMI-SVD vectors from the training text feed the from-scratch tok2vec
    vectors_dim: int = 100
    dev_fraction: float = 0.1  # held out of the training file (by blocks) when no dev file is given

    def __post_init__(self) -> None:
        if self.preset not in ("efficiency", "chars", "wide"):
            raise InvalidInput(f"unknown NER preset {self.preset!r} (efficiency, chars or wide)")
        if self.static_vectors and self.base is not None:
            raise InvalidInput("static vectors need a from-scratch tok2vec; a --base pipeline keeps its own")
        if not 8 <= self.vectors_dim <= 1000:
            raise InvalidInput(f"vectors_dim must be in [8, 1000], got {self.vectors_dim}")
        if not 0 < self.dev_fraction < 1:
            raise InvalidInput(f"dev_fraction must be in (0, 1), got {self.dev_fraction}")
        if self.max_epochs < 1 or self.patience < 1 or self.max_minutes <= 0:
            raise InvalidInput("max_epochs and patience must be >= 1 and max_minutes > 0")
        if not 0 <= self.dropout < 1:
            raise InvalidInput(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TrainResult:
    out: str
    best_epoch: int
    best_dev: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    labels: list[str] = field(default_factory=list)
    alignment: dict[str, Any] = field(default_factory=dict)
    dropped_labels: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_EMBED = {
    "efficiency": """
[components.ner.model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [5000, 1000, 2500, 2500]
include_static_vectors = {static}
""",
    "wide": """
[components.ner.model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 128
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [20000, 5000, 5000, 5000]
include_static_vectors = {static}
""",
    "chars": """
[components.ner.model.tok2vec.embed]
@architectures = "spacy.CharacterEmbed.v2"
width = 128
rows = 10000
nM = 64
nC = 8
include_static_vectors = {static}
feature = "NORM"
""",
}
_ENCODE = {"efficiency": (96, 4), "chars": (128, 4), "wide": (128, 4)}

_CONFIG = """
[nlp]
lang = "en"
pipeline = ["ner"]

[components]

[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = true
nO = null

[components.ner.model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"
{embed}
[components.ner.model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = {width}
depth = {depth}
window_size = 1
maxout_pieces = 3

[training]

[training.optimizer]
@optimizers = "Adam.v1"
beta1 = 0.9
beta2 = 0.999
L2_is_weight_decay = true
L2 = 0.01
grad_clip = 1.0
use_averages = true
eps = 0.00000001
learn_rate = {learn_rate}
"""


def choose_start(base: str | None, preset: str | None, static_vectors: bool) -> tuple[str | None, str]:
    """(base, preset) from the CLI's flags: the default is fine-tuning the stock pipeline's NER
    (chosen on a held-out split of CoNLL train, bench/results/ner-recipe.json); naming a preset or
    static vectors, or `--base none`, trains from scratch."""
    if base is not None and base.lower() == "none":
        return None, preset or "efficiency"
    if base is not None:
        if preset is not None or static_vectors:
            raise InvalidInput("--preset and --static-vectors shape a from-scratch tok2vec; drop them or --base")
        return base, "efficiency"
    if preset is not None or static_vectors:
        return None, preset or "efficiency"
    return "auto", "efficiency"


def config_for(opts: TrainOptions) -> str:
    """The spaCy config text of a from-scratch run."""
    width, depth = _ENCODE[opts.preset]
    embed = _EMBED[opts.preset].format(static="true" if opts.static_vectors else "false")
    return _CONFIG.format(embed=embed, width=width, depth=depth, learn_rate=opts.learn_rate)


def build_pipeline(opts: TrainOptions, labels: Sequence[str]):  # type: ignore[no-untyped-def]
    """An uninitialised pipeline with one `ner` (labels added) and, with a base, the base's NER weights."""
    import spacy
    from thinc.api import Config

    from ner.pipeline import use_numpy_gemm

    if opts.base is None:
        nlp = spacy.util.load_model_from_config(Config().from_str(config_for(opts)), auto_fill=True)
        base_ner = None
    else:
        from ner.pipeline import load_pipeline

        nlp = load_pipeline(opts.base)  # only ner (and what it listens to) is kept
        if "ner" not in nlp.pipe_names:
            raise InvalidInput(f"base pipeline {opts.base} has no component named 'ner'")
        base_ner = nlp.get_pipe("ner")
        ner_cfg = dict(nlp.config["components"]["ner"])
        nlp.remove_pipe("ner")
        nlp.add_pipe("ner", config={k: v for k, v in ner_cfg.items() if k != "factory"})
    ner = nlp.get_pipe("ner")
    for lab in labels:
        ner.add_label(lab)
    use_numpy_gemm(nlp)  # faster products on CPUs where thinc's BLIS runs generic kernels (ner.pipeline)
    return nlp, base_ner


def _copy_weights(ner: Any, base_ner: Any) -> list[str]:
    """Copy tok2vec and the state-to-hidden layer from the base ner (same architecture)."""
    copied = []
    for ref in ("tok2vec", "lower"):
        src, dst = base_ner.model.get_ref(ref), ner.model.get_ref(ref)
        dst.from_bytes(src.to_bytes())
        copied.append(ref)
    return copied


def _resolved(base: str | None) -> str | None:
    from ner.pipeline import resolve_model_name

    return resolve_model_name(base) if base else None


def _restrict(examples: list[NerExample], labels: Sequence[str], dropped: dict[str, int]) -> list[NerExample]:
    keep = set(labels)
    out = []
    for ex in examples:
        spans = []
        for s in ex.spans:
            if s[2] in keep:
                spans.append(s)
            else:
                dropped[s[2]] = dropped.get(s[2], 0) + 1
        out.append(NerExample(ex.text, tuple(spans), ex.words, ex.source))
    return out


def _words_of(nlp: Any, examples: Sequence[NerExample]) -> list[Sequence[str]]:
    """Token strings per example: the gold tokens of CoNLL, the pipeline's tokenizer for JSONL."""
    return [ex.words if ex.words is not None else [t.text for t in nlp.make_doc(ex.text)] for ex in examples]


def _word_batches(examples: list[Any], start: int, stop: int, step: int) -> Any:
    from spacy.training.batchers import minibatch_by_words

    def sizes() -> Any:  # spaCy's compounding batch size (in words), continued across epochs
        i = step
        while True:
            yield int(min(stop, start * 1.001**i))
            i += 1

    return minibatch_by_words(examples, size=sizes(), tolerance=0.2)


def train_ner(
    train_path: Path,
    dev_path: Path | None,
    out: Path,
    opts: TrainOptions = TrainOptions(),
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train, evaluate on dev after each epoch, keep the best epoch; write the model directory.

    Without a dev file, `opts.dev_fraction` of the training file is held out (seeded, by blocks of
    consecutive sentences: `ner.split`) so that an evaluation file is never needed for stopping.
    """
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example
    from tqdm import tqdm

    t0 = time.monotonic()
    spacy.util.fix_random_seed(opts.seed)
    train_ex = read_examples(train_path)
    if not train_ex:
        raise InvalidInput(f"{train_path} holds no annotated texts")
    if dev_path is None:
        train_ex, dev_ex = split_held_out(train_ex, opts.dev_fraction, opts.seed)
        log.info("no dev file: %d of %d texts held out for stopping", len(dev_ex), len(dev_ex) + len(train_ex))
    else:
        dev_ex = read_examples(dev_path)
    if not dev_ex:
        raise InvalidInput(f"{dev_path} holds no annotated texts")
    dropped: dict[str, int] = {}
    labels = list(opts.labels) or labels_of(train_ex)
    if not labels:
        raise InvalidInput(f"{train_path} has no entities; nothing to learn")
    if opts.labels:
        train_ex, dev_ex = _restrict(train_ex, labels, dropped), _restrict(dev_ex, labels, {})
        if dropped:
            log.warning("entities with labels outside --labels were left out: %s", dropped)

    nlp, base_ner = build_pipeline(opts, labels)
    if opts.static_vectors:
        words, matrix = ppmi_svd_vectors(_words_of(nlp, train_ex), dim=opts.vectors_dim)
        set_vectors(nlp, words, matrix)
        log.info("static vectors from the training text: %d words x %d", len(words), opts.vectors_dim)
    gold_docs, report = to_docs(nlp, train_ex, opts.misaligned)
    dev_docs, dev_report = to_docs(nlp, dev_ex, opts.misaligned)
    if report.misaligned or dev_report.misaligned:
        log.warning(
            "misaligned spans (%s): train %d of %d, dev %d of %d; first: %s",
            opts.misaligned, report.misaligned, report.total_spans, dev_report.misaligned, dev_report.total_spans,
            (report.examples or dev_report.examples)[:1],
        )

    def example_of(gold: Any) -> Example:
        pred = Doc(nlp.vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
        return Example(pred, gold)

    examples = [example_of(d) for d in gold_docs]
    ner = nlp.get_pipe("ner")
    ner.initialize(lambda: examples[:2000], nlp=nlp, labels=None)
    for lab in labels:
        ner.add_label(lab)
    copied = _copy_weights(ner, base_ner) if base_ner is not None else []
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = opts.learn_rate

    rng = random.Random(opts.seed)
    history: list[dict[str, Any]] = []
    best_f, best_epoch, best_bytes, stale, step = -1.0, 0, None, 0, 0
    deadline = t0 + opts.max_minutes * 60
    n_words = sum(len(d) for d in gold_docs)
    manifest = make_manifest(
        MODEL_KIND, FORMAT_VERSION, options=asdict(opts), labels=labels, train=str(train_path),
        dev=str(dev_path) if dev_path else f"{opts.dev_fraction:.0%} of train (seed {opts.seed})",
        base_model=_resolved(opts.base), copied_from_base=copied,
    )
    with atomic_artifact_dir(Path(out), manifest) as tmp, JsonlLog(tmp / "training.jsonl") as jlog:
        jlog.write("start", options=asdict(opts), labels=labels, train_texts=len(examples), dev_texts=len(dev_ex))
        for epoch in range(1, opts.max_epochs + 1):
            rng.shuffle(examples)
            losses: dict[str, float] = {}
            e0 = time.monotonic()
            bar = tqdm(total=n_words, desc=f"epoch {epoch}", unit="w", disable=not progress, leave=False,
                       mininterval=bar_interval())
            for batch in _word_batches(examples, opts.batch_words_start, opts.batch_words_stop, step):
                nlp.update(batch, drop=opts.dropout, sgd=optimizer, losses=losses)
                step += 1
                bar.update(sum(len(eg.reference) for eg in batch))
                if time.monotonic() > deadline:
                    break
            bar.close()
            with nlp.use_params(optimizer.averages):
                scores = evaluate_examples(nlp, dev_ex, label_map={})
                f1 = scores["overall"]["f1"]
                if f1 > best_f:
                    best_f, best_epoch, best_bytes, stale = f1, epoch, nlp.to_bytes(), 0
                else:
                    stale += 1
            row = {
                "epoch": epoch,
                "loss": round(float(losses.get("ner", 0.0)), 3),
                "dev_precision": round(scores["overall"]["precision"], 4),
                "dev_recall": round(scores["overall"]["recall"], 4),
                "dev_f1": round(f1, 4),
                "epoch_seconds": round(time.monotonic() - e0, 1),
                "elapsed_seconds": round(time.monotonic() - t0, 1),
            }
            history.append(row)
            jlog.write("epoch", **row)
            log.info("epoch %d loss %.1f dev P %.4f R %.4f F1 %.4f (%.0fs)", epoch, row["loss"],
                     row["dev_precision"], row["dev_recall"], f1, row["epoch_seconds"])
            if on_epoch:
                on_epoch(row)
            if stale >= opts.patience:
                log.info("no dev improvement for %d epochs; stopping", stale)
                break
            if time.monotonic() > deadline:
                log.info("time budget of %.0f minutes reached; stopping", opts.max_minutes)
                break
        assert best_bytes is not None
        nlp.from_bytes(best_bytes)
        nlp.meta.update({"name": Path(out).name.replace("-", "_") or "ragkiln_ner", "version": "0.0.1"})
        nlp.to_disk(tmp)
        best_dev = next(h for h in history if h["epoch"] == best_epoch)
        jlog.write("done", best_epoch=best_epoch, best_dev=best_dev, seconds=round(time.monotonic() - t0, 1))
        _plot(history, tmp / "training.png")
    return TrainResult(
        out=str(out), best_epoch=best_epoch, best_dev=best_dev, epochs=history, seconds=time.monotonic() - t0,
        labels=labels, alignment={"train": report.to_dict(), "dev": dev_report.to_dict()}, dropped_labels=dropped,
    )


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    """Loss and dev F1 per epoch, for the report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency, the PNG is a nicety
        return
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    ax1.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [h["dev_f1"] for h in history], "s-", color="tab:red")
    ax2.set_ylabel("dev F1", color="tab:red")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
