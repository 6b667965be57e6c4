"""How-to questions on a command reference nobody tuned on: the AWS CLI's own usage examples.

Corpus: the `examples/{s3,s3api,lambda,iam}/*.rst` pages of the awscli 1.45.11 wheel from PyPI (329 pages of
"The following command ...::" sentences, each followed by the command as a literal block), ingested with
the defaults (NER off). Questions: bench/data/awscli_questions.jsonl (48 "How do I ...?" questions, each
with the command names that answer it), written before any answer to them was read; split into a dev
half and a held-out half by bench/refusal.half_of (the seeded hash every question set here uses). Each
question goes through `reader.answer.ask`, what `ragkiln ask` and `/v1/answer` answer extractively.
`--corpus awscli2`: the dynamodb, sns, sqs, kms, ecr and cloudwatch pages of the same wheel with
bench/data/awscli2_questions.jsonl (40 questions written after the how-to example rule was fixed, before any
of those pages was read: only their file names, to check each expected command has one), scored whole.
Correct when an expected command name appears as a whole token (not inside a longer command name) in the
answer span ("span"), in the answer or its sentence ("sentence_or_span"), or in those or the code example the
answer carries for a how-to question ("shown"); "runnable" when any of them holds the command as it is run
("aws s3api put-bucket-cors ..."), and "runnable_without_example" the same without the example.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/awscli_answers.py --prepare   # download, unpack, ingest (~2 min)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/awscli_answers.py --half dev --out bench/results/awscli-answers-X.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/awscli_answers.py --corpus awscli2 --half all   # a second, fresh corpus
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.page_answers import ask_each  # noqa: E402
from bench.refusal import half_of  # noqa: E402

WORK = ROOT / "bench" / "work" / "awscli"
WHEEL = "awscli==1.45.11"
SERVICES = ("s3", "s3api", "lambda", "iam")
QUESTIONS = ROOT / "bench" / "data" / "awscli_questions.jsonl"


@dataclass(frozen=True)
class Corpus:
    services: tuple[str, ...]
    questions: Path
    work: Path


CORPORA = {
    "awscli": Corpus(SERVICES, QUESTIONS, WORK),
    # written on 2026-12-07 before any page of these services was read (only their file names, to check that each
    # expected command has a page), after the how-to example rule was fixed: a fresh held-out set for it
    "awscli2": Corpus(("dynamodb", "sns", "sqs", "kms", "ecr", "cloudwatch"),
                      ROOT / "bench" / "data" / "awscli2_questions.jsonl", ROOT / "bench" / "work" / "awscli2"),
}


def names(expected: str, text: str) -> bool:
    """A command name as a whole token: "rm" not inside "rmdir", "get-policy" not inside "get-policy-version"."""
    return re.search(r"(?<![\w-])" + re.escape(expected) + r"(?![\w-])", text) is not None


def runnable(expected: str, text: str) -> bool:
    """The command as a user runs it: "aws s3api put-bucket-cors", "aws s3 rb" (a service, then the name)."""
    return re.search(r"\baws\s+[\w-]+\s+" + re.escape(expected) + r"(?![\w-])", text) is not None


def corpus_dir(c: Corpus = CORPORA["awscli"]) -> Path:
    """The corpus folder, downloaded from PyPI and unpacked once (bench/embedder_gate.py reads it too)."""
    corpus = c.work / "corpus"
    if not corpus.exists():
        wheels = WORK / "wheel"  # one download serves every corpus
        wheels.mkdir(parents=True, exist_ok=True)
        if not list(wheels.glob("awscli-*.whl")):
            subprocess.run([sys.executable, "-m", "pip", "download", WHEEL, "--no-deps", "-q", "-d", str(wheels)],
                           check=True)
        wheel = next(wheels.glob("awscli-*.whl"))
        tmp = c.work / "corpus.tmp"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                parts = name.split("/")
                if len(parts) == 4 and parts[:2] == ["awscli", "examples"] and parts[2] in c.services \
                        and name.endswith(".rst"):
                    out = tmp / parts[2] / parts[3]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
        tmp.rename(corpus)
    return corpus


def labels(c: Corpus = CORPORA["awscli"]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Each question (id q0, q1, ... in file order) and the documents (`service/command.rst`) that answer it:
    every page named by its expected commands; "get-policy" is Lambda's there (the question asks of a function)."""
    pages: dict[str, list[str]] = {}
    for page in sorted(corpus_dir(c).glob("*/*.rst")):
        pages.setdefault(page.stem, []).append(f"{page.parent.name}/{page.name}")
    if "lambda" in c.services:
        pages["get-policy"] = ["lambda/get-policy.rst"]
    rows = [json.loads(line) for line in c.questions.read_text().splitlines() if line.strip()]
    queries = {f"q{i}": r["question"] for i, r in enumerate(rows)}
    return queries, {f"q{i}": {d for e in r["expected"] for d in pages.get(e, [])} for i, r in enumerate(rows)}


def prepare(c: Corpus) -> Path:
    """The corpus and its workspace (ingested once, NER off)."""
    from common.settings import load_settings
    from indexer import service

    corpus = corpus_dir(c)
    settings = load_settings({"home": c.work / "ws", "ner": {"enabled": False}})
    service.ingest(settings, [corpus], progress=False)  # incremental: a workspace up to date costs a scan
    return c.work / "ws"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prepare", action="store_true", help="only download, unpack and ingest")
    ap.add_argument("--half", choices=("dev", "held-out", "all"), default="dev")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default: print only)")
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="awscli",
                    help="awscli: s3, s3api, lambda, iam; awscli2: dynamodb, sns, sqs, kms, ecr, cloudwatch")
    a = ap.parse_args()
    c = CORPORA[a.corpus]
    home = prepare(c)
    if a.prepare:
        return

    from common.settings import load_settings

    rows = [json.loads(line) for line in c.questions.read_text().splitlines() if line.strip()]
    want = {"dev": "fit", "held-out": "eval"}.get(a.half)
    rows = [r for r in rows if want is None or half_of(r["question"]) == want]
    asked, seconds = ask_each(load_settings({"home": home, "ner": {"enabled": False}}), [r["question"] for r in rows])
    answers = []
    for r, g in zip(rows, asked):
        span, sentence, example = g.answer, g.sentence, g.example
        in_span = any(names(e, span) for e in r["expected"])
        in_sentence = in_span or any(names(e, sentence) for e in r["expected"])
        answers.append({"question": r["question"], "expected": r["expected"], "answer": span, "sentence": sentence,
                        "example": example, "doc": g.doc, "grounded": g.grounded,
                        "span": in_span, "sentence_or_span": in_sentence,
                        "shown": in_sentence or any(names(e, example) for e in r["expected"]),
                        "runnable": any(runnable(e, f"{span}\n{sentence}\n{example}") for e in r["expected"]),
                        "runnable_without_example": any(runnable(e, f"{span}\n{sentence}") for e in r["expected"])})
    summary = {"questions": len(rows), "span": sum(x["span"] for x in answers),
               "sentence_or_span": sum(x["sentence_or_span"] for x in answers),
               "with_example": sum(bool(x["example"]) for x in answers),
               "shown": sum(x["shown"] for x in answers), "runnable": sum(x["runnable"] for x in answers),
               "runnable_without_example": sum(x["runnable_without_example"] for x in answers),
               "refused": sum(not x["grounded"] for x in answers),
               "seconds": seconds}
    print(json.dumps(summary))
    if a.out:
        a.out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/awscli_answers.py "
                                     + " ".join(sys.argv[1:]), "half": a.half, "corpus": f"{WHEEL} examples/"
                                     f"{{{','.join(c.services)}}}", "machine": machine(), "summary": summary,
                                     "answers": answers}, indent=1) + "\n")


if __name__ == "__main__":
    main()
