"""`ragkiln ner train` on a handful of sentences produces a model `ner.model` can load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

SENTENCES = [
    ("Alice Smith joined Pfizer in Boston .", [("Alice Smith", "PER"), ("Pfizer", "ORG"), ("Boston", "LOC")]),
    ("Bob Jones left Moderna for Paris .", [("Bob Jones", "PER"), ("Moderna", "ORG"), ("Paris", "LOC")]),
    ("Pfizer opened an office in Berlin .", [("Pfizer", "ORG"), ("Berlin", "LOC")]),
    ("Carol King visited London .", [("Carol King", "PER"), ("London", "LOC")]),
    ("Moderna hired Dan Brown .", [("Moderna", "ORG"), ("Dan Brown", "PER")]),
    ("Eve Adams works for Novartis in Basel .", [("Eve Adams", "PER"), ("Novartis", "ORG"), ("Basel", "LOC")]),
]


def write_jsonl(path: Path, rows: list[tuple[str, list[tuple[str, str]]]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text, ents in rows:
            spans = [[text.index(t), text.index(t) + len(t), lab] for t, lab in ents]
            f.write(json.dumps({"text": text, "entities": spans}) + "\n")
    return path


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    return write_jsonl(tmp_path / "train.jsonl", SENTENCES), write_jsonl(tmp_path / "dev.jsonl", SENTENCES[:3])


def test_ner_train_writes_a_loadable_model(tmp_path: Path, data: tuple[Path, Path]) -> None:
    train, dev = data
    out = tmp_path / "models" / "ner"
    runner = CliRunner()
    res = runner.invoke(
        app, ["ner", "train", "--train", str(train), "--dev", str(dev), "--out", str(out), "--preset", "efficiency",
              "--max-epochs", "20", "--learn-rate", "0.01", "--dropout", "0",
              "--patience", "20", "--json"],
    )
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)
    assert result["labels"] == ["LOC", "ORG", "PER"]
    assert len(result["epochs"]) == 20
    assert all(set(e) >= {"epoch", "loss", "dev_f1"} for e in result["epochs"])
    assert result["epochs"][-1]["loss"] < result["epochs"][0]["loss"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "ner_model" and manifest["labels"] == ["LOC", "ORG", "PER"]
    assert (out / "training.jsonl").exists() and (out / "training.png").exists()

    from ner.pipeline import load_pipeline, ner_labels

    nlp = load_pipeline(str(out))
    assert nlp.pipe_names == ["ner"] and ner_labels(nlp) == ["LOC", "ORG", "PER"]
    assert result["best_dev"]["dev_f1"] > 0.5  # it learned something from six sentences

    res = runner.invoke(app, ["ner", "eval", "--data", str(dev), "--model", str(out), "--json"])
    assert res.exit_code == 0, res.output
    scores = json.loads(res.stdout)
    assert set(scores["overall"]) >= {"precision", "recall", "f1"}
    assert scores["overall"]["f1"] == pytest.approx(result["best_dev"]["dev_f1"], abs=1e-4)
    assert scores["label_map"] is None


def test_misaligned_training_spans_fail_with_one_line(tmp_path: Path, data: tuple[Path, Path]) -> None:
    train, dev = data
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "Pfizer sells aspirin", "entities": [[0, 4, "ORG"]]}) + "\n")
    res = CliRunner().invoke(app, ["ner", "train", "--train", str(bad), "--dev", str(dev), "--out", str(tmp_path / "m")])
    assert res.exit_code == 2
    assert "do not align" in res.stderr and "'Pfiz'" in res.stderr
    assert not (tmp_path / "m").exists()


def test_missing_model_is_exit_6(tmp_path: Path, data: tuple[Path, Path]) -> None:
    res = CliRunner().invoke(app, ["ner", "eval", "--data", str(data[1]), "--model", "en_core_web_nope"])
    assert res.exit_code == 6 and "pip install" in res.stderr


def test_ner_train_from_a_pretrained_base(tmp_path: Path, data: tuple[Path, Path]) -> None:
    from ner.pipeline import load_pipeline, ner_labels, resolve_model_name

    try:
        base = resolve_model_name("auto")
    except Exception:  # noqa: BLE001
        pytest.skip("no pretrained English pipeline installed")
    train, dev = data
    out = tmp_path / "from_base"
    res = CliRunner().invoke(  # the default start: the stock pipeline's NER weights
        app, ["ner", "train", "--train", str(train), "--dev", str(dev), "--out", str(out), "--max-epochs", "3", "--json"],
    )
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base_model"] == base and manifest["copied_from_base"] == ["tok2vec", "lower"]
    assert manifest["options"]["base"] == "auto"
    nlp = load_pipeline(str(out))
    assert ner_labels(nlp) == ["LOC", "ORG", "PER"]  # only the new labels, none of OntoNotes'
    # Transfer: the base's NER knowledge makes even 3 epochs on six sentences useful.
    assert json.loads(res.stdout)["best_dev"]["dev_f1"] >= 0.5


def _conll(path: Path, n: int) -> Path:
    """n templated CoNLL sentences (IOB2), enough blocks for the default held-out split."""
    names, orgs, towns = ["Alice", "Bob", "Carol", "Dan"], ["Pfizer", "Moderna", "Novartis"], ["Paris", "Basel", "Boston"]
    rows = []
    for i in range(n):
        who, org, town = names[i % 4], orgs[i % 3], towns[(i // 3) % 3]
        rows.append(f"{who} B-PER\njoined O\n{org} B-ORG\nin O\n{town} B-LOC\n. O")
    path.write_text("\n\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_ner_train_without_dev_holds_out_part_of_train(tmp_path: Path) -> None:
    train = _conll(tmp_path / "train.txt", 300)
    out = tmp_path / "m"
    res = CliRunner().invoke(
        app, ["ner", "train", "--train", str(train), "--out", str(out), "--preset", "wide", "--static-vectors",
              "--max-epochs", "2", "--json"],
    )
    assert res.exit_code == 0, res.output
    start = json.loads((out / "training.jsonl").read_text().splitlines()[0])
    assert (start["train_texts"], start["dev_texts"]) == (250, 50)  # 1 of 6 blocks of 50 (10%, rounded)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dev"] == "10% of train (seed 0)" and manifest["options"]["static_vectors"] is True

    from ner.pipeline import load_pipeline

    nlp = load_pipeline(str(out))
    assert nlp.vocab.vectors.name == "ragkiln_corpus_ppmi"
    assert nlp.vocab.vectors.shape[1] == 12  # 13 distinct words in the fit part: the dimension is capped


def test_a_preset_with_a_base_is_refused(tmp_path: Path, data: tuple[Path, Path]) -> None:
    train, dev = data
    res = CliRunner().invoke(app, ["ner", "train", "--train", str(train), "--dev", str(dev), "--out",
                                   str(tmp_path / "m"), "--base", "auto", "--preset", "chars"])
    assert res.exit_code == 2 and "from-scratch" in res.stderr
