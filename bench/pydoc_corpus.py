"""A second documentation corpus, assembled from the docstrings of this Python's standard library,
for the reader's corpus questions (bench/reader_corpus.py --corpus pydoc).

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/pydoc_corpus.py

One reStructuredText page per module, written as the sample corpus's reference pages are: a title
"name --- <first docstring line>", the module docstring's first paragraph, then each public function,
class and exception as a Sphinx directive with its signature and the first paragraph of its docstring. Modules that the demo-corpus check (bench/data/python_docs_questions*.jsonl)
asks about, or whose pages it retrieves from samples/python-docs, are left out: the check reads
nothing the reader was fitted on. Ingested with default settings (no NER) into
bench/work/reader/pydoc-ws.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK = ROOT / "bench" / "work" / "reader"
SOURCE = WORK / "pydoc-corpus"
WS = WORK / "pydoc-ws"
HELD_OUT = ROOT / "bench" / "results" / "reader-corpus.json"  # its held-out subjects (bench/reader_corpus.py)
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtledemo", "test", "lib2to3", "ensurepip", "venv", "pydoc_data"}


def first_paragraph(doc: str | None) -> str:
    if not doc:
        return ""
    paras = [p.strip() for p in inspect.cleandoc(doc).split("\n\n") if p.strip()]
    return " ".join(paras[0].split()) if paras else ""


def signature(name: str, obj: object) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{name}(...)"


def page(modname: str, mod: object) -> str | None:
    """The module's page in Sphinx's reStructuredText, as the sample corpus's pages are written (a title,
    then `.. function::` / `.. class::` / `.. exception::` entries), so ingest renders it the same way."""
    doc = inspect.getdoc(mod) or ""
    lines = [ln for ln in doc.splitlines() if ln.strip()]
    if not lines:
        return None
    title = f"{modname} --- {lines[0].strip().rstrip('.')}"
    out = [title + "\n" + "=" * len(title), first_paragraph(doc)]
    names = getattr(mod, "__all__", None) or [n for n in dir(mod) if not n.startswith("_")]
    for n in sorted(set(names)):
        obj = getattr(mod, n, None)
        if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", modname) != modname:
            continue
        desc = first_paragraph(inspect.getdoc(obj))
        if desc and not desc.startswith(n + "("):
            kind = ("exception" if issubclass(obj, BaseException) else "class") if inspect.isclass(obj) else "function"
            out += [f".. {kind}:: {signature(n, obj)}\n\n   {desc}"]
    return "\n\n".join(out) + "\n" if len(out) > 2 else None


def main() -> None:
    held = json.loads(HELD_OUT.read_text(encoding="utf-8"))["held_out_subjects"]
    expected = {json.loads(ln)["expected"] for p in sorted((ROOT / "bench" / "data").glob("python_docs_questions*.jsonl"))
                for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()}
    excluded = {s.split(".")[0] for s in held} | {e.split(".")[0] for e in expected}
    if SOURCE.exists():  # pages of modules held out since the last run must not linger
        shutil.rmtree(SOURCE)
    SOURCE.mkdir(parents=True)
    written = 0
    warnings.simplefilter("ignore")
    for m in sorted(sys.stdlib_module_names):
        if m.startswith("_") or m in SKIP or m in excluded:
            continue
        try:
            mod = importlib.import_module(m)
        except Exception:  # platform-only or removed modules
            continue
        mods = [(m, mod)]
        if hasattr(mod, "__path__"):  # a package's public submodules too
            for info in pkgutil.iter_modules(mod.__path__):
                sub = f"{m}.{info.name}"
                if info.name.startswith("_") or info.name in SKIP:
                    continue
                try:
                    mods.append((sub, importlib.import_module(sub)))
                except Exception:
                    continue
        for name, mo in mods:
            text = page(name, mo)
            if text:
                (SOURCE / f"{name}.rst").write_text(text, encoding="utf-8")
                written += 1
    print(f"wrote {written} pages to {SOURCE} ({len(excluded)} held-out names excluded)", flush=True)
    subprocess.run([str(ROOT / ".venv" / "bin" / "ragkiln"), "--workspace", str(WS), "ingest", str(SOURCE),
                    "--no-ner", "--json"], check=True)


if __name__ == "__main__":
    main()
