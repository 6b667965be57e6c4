"""Pure formatting for the build report: numbers, sizes, durations, field labels with units, and the
conversion of a stage's (possibly nested) outputs into plain tables. Nothing here does I/O, so
every rule is unit-tested (tests/unit/pipeline/test_report_format.py).

A table is `Table(title, headers, rows)` with every cell already a short string: the renderers in
`pipeline.report` only escape and lay them out, never see a dict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MB = 1_000_000  # sizes are shown in decimal megabytes (what `ls -l --si` and file managers show)

# field name -> (label with its unit, kind). The kind picks the formatter in `format_value`
# ("int", "list": the default one for the value's type).
FIELDS: dict[str, tuple[str, str]] = {
    "seconds": ("time", "duration"), "train_seconds": ("training time", "duration"),
    "prepare_seconds": ("preparation time", "duration"),
    "size_bytes": ("size (MB)", "mb"), "ppl": ("perplexity", "num"), "ppl_delta_pct": ("Δppl vs torch (%)", "pct"),
    "kl": ("KL (nats)", "num"), "kl_p99": ("KL p99 (nats)", "num"), "top1": ("top-1 agreement (%)", "frac"),
    "max_abs_diff": ("max |logit diff|", "num"), "f32_max_abs_diff": ("F32 max |logit diff|", "num"),
    "size_vs_f32": ("size vs F32 (%)", "frac"), "gen_tok_s": ("generation (tok/s)", "num"),
    "pp_tok_s": ("prompt (tok/s)", "num"), "gen_speedup_vs_torch": ("generation × torch", "num"),
    "pp_speedup_vs_torch": ("prompt × torch", "num"), "greedy_match": ("greedy = torch (%)", "frac"),
    "greedy_f32_match": ("F32 greedy = torch (%)", "frac"), "tokenizer_match": ("tokenizer = torch (%)", "frac"),
    "prompt_format_match": ("prompt format = torch (%)", "frac"), "gen_tokens_total": ("tokens generated", "int"),
    "p50_ms": ("p50 (ms)", "num"), "p99_ms": ("p99 (ms)", "num"), "samples_ms": ("samples", "list"),
    "n_params": ("parameters (M)", "millions"), "tokens_per_s": ("training (tok/s)", "num"),
    "mfu": ("MFU (%)", "frac"), "scored_share": ("scored positions (%)", "frac"),
    "matmul_peak_gflops": ("matmul peak (GFLOP/s)", "num"), "pairs_per_second": ("pairs/s", "num"),
    "final_train_loss": ("final train loss (nats/token)", "num"), "train_loss": ("train loss", "num"),
    "heldout_loss": ("held-out loss (nats/token)", "num"), "heldout_ppl": ("held-out perplexity", "num"),
    "ppl_no_context": ("perplexity without context", "num"), "ppl_with_context": ("perplexity with context", "num"),
    "chunks_total": ("chunks", "int"), "documents_total": ("documents", "int"),
    "chunks_embedded": ("chunks embedded", "int"), "avg_row_tokens": ("tokens per row", "num"),
    "resumed_from_step": ("continued from step (speeds cover the rest)", "int"),
}
# row names of nested outputs (other keys are data, such as "q8_0" or "bm25", and stay as they are)
LM_NAMES = {"retrieval_lm": "retrieval-trained LM", "plain_lm": "plain LM (trained to check the retrieval one)",
            "qa_lm": "QA-tuned LM"}
NAMES = {"dev_before": "dev pairs, base", "dev_after": "dev pairs, adapted",
         "dev_after_unaveraged": "dev pairs, adapted before averaging with the base",
         "beir_before": "BEIR test, base", "beir_after": "BEIR test, adapted",
         "select": "BEIR split that decides the embedder", **LM_NAMES}
SCALAR = (str, int, float, bool, type(None))
MAX_COLUMNS = 8  # a dict of dicts with more fields than this (and fewer rows) is shown transposed
MAX_LIST_ROWS = 12  # a list of records shows this many rows, then a count of the rest


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def sig(x: float, digits: int = 3) -> str:
    """`x` rounded to `digits` significant figures, without exponent for ordinary magnitudes;
    large numbers get thousands separators (12,345)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "-∞"
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 10 ** digits:
        return f"{round(x):,}"
    if ax < 1e-3:
        mantissa, exp = f"{x:.{digits - 1}e}".split("e")
        return (mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa) + "e" + exp
    decimals = max(0, digits - 1 - math.floor(math.log10(ax)))
    s = f"{x:.{decimals}f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def human_bytes(n: float) -> str:
    """1234567 -> '1.23 MB' (decimal units)."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{sig(n / size)} {unit}"
    return f"{int(n)} B"


def human_duration(seconds: float) -> str:
    """0.0123 -> '12 ms', 4.25 -> '4.25 s', 125 -> '2 min 5 s', 3725 -> '1 h 2 min'."""
    if seconds is None:
        return "–"
    if seconds < 1:
        return f"{sig(seconds * 1000)} ms"
    if seconds < 60:
        return f"{sig(seconds)} s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def label(key: str) -> str:
    """The column or row label of a field, with its unit."""
    if key in FIELDS:
        return FIELDS[key][0]
    if key in NAMES:
        return NAMES[key]
    if key.endswith("_bytes"):
        return key[: -len("_bytes")].replace("_", " ") + " (MB)"
    if key.endswith("_ms"):
        return key[: -len("_ms")].replace("_", " ") + " (ms)"
    if key.endswith("_seconds"):
        return key[: -len("_seconds")].replace("_", " ") + " time"
    return key.replace("_", " ")


def _kind(key: str, value: Any) -> str:
    if key in FIELDS:
        return FIELDS[key][1]
    if key.endswith("_bytes"):
        return "mb"
    if key.endswith("_seconds"):
        return "duration"
    if key.endswith("_pct"):
        return "pct"
    return "num"


def format_value(key: str, value: Any) -> str:
    """A cell for `value` under the field `key` (unit in `label(key)`, except human durations)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value if len(value) <= 160 else value[:157] + "…"
    if isinstance(value, dict):
        return inline_dict(value)
    if isinstance(value, (list, tuple)):
        return summarize_list(key, list(value))
    if not isinstance(value, (int, float)):
        return str(value)
    kind = _kind(key, value)
    if kind == "duration":
        return human_duration(float(value))
    if kind == "mb":
        return sig(value / MB)
    if kind == "millions":
        return sig(value / 1e6)
    if kind == "frac":
        return sig(100 * value)
    if kind == "pct":
        return ("+" if value > 0 else "") + sig(value)
    if isinstance(value, int):
        return f"{value:,}"
    return sig(value)


def inline_dict(d: dict[str, Any]) -> str:
    """A small dict as 'key: value, key: value' (never braces or quotes)."""
    if not d:
        return "–"
    parts = [f"{k}: {format_value(str(k), v) if isinstance(v, SCALAR) else _brief(v)}"
             for k, v in d.items()]
    return ", ".join(parts)


def _brief(v: Any) -> str:
    return f"{len(v)} entries" if isinstance(v, (dict, list, tuple)) else str(v)


def summarize_list(key: str, values: list[Any]) -> str:
    """A list in one cell: short scalar lists joined, long numeric ones as 'N values, min–max',
    records as a count."""
    if not values:
        return "nothing logged" if key.endswith("_curve") else "none"
    if all(isinstance(v, SCALAR) and not isinstance(v, bool) for v in values):
        nums = [v for v in values if isinstance(v, (int, float))]
        if len(nums) == len(values) and len(values) > 6:
            return f"{len(values)} values, {format_value(key, min(nums))}–{format_value(key, max(nums))}"
        if len(values) <= 6:
            return ", ".join(format_value(key, v) for v in values)
        return ", ".join(str(v) for v in values[:6]) + f" … ({len(values)} in all)"
    return f"{len(values)} entries"


def is_curve(values: Any) -> bool:
    """A list of {'step': …, metric: …} records (plotted, not tabled)."""
    return isinstance(values, list) and bool(values) and all(isinstance(r, dict) and "step" in r for r in values)


def distinct(values: list[float], digits: int = 3) -> int:
    """How many different values there are once rounded to `digits` significant figures."""
    return len({sig(float(v), digits) for v in values if v is not None})


def change(before: float | None, after: float | None, digits: int = 3) -> str:
    """'0.512 → 0.547 (+0.035)', or '0.512 (no change)' when equal within rounding."""
    if before is None or after is None:
        return "–"
    if sig(before, digits) == sig(after, digits):
        return f"{sig(after, digits)} (no change)"
    d = after - before
    return f"{sig(before, digits)} → {sig(after, digits)} ({'+' if d > 0 else ''}{sig(d, digits)})"


def _homogeneous(d: dict[str, Any]) -> bool:
    """A dict of dicts of mostly scalars: rendered as one matrix (rows = outer keys)."""
    return bool(d) and all(isinstance(v, dict) and v for v in d.values()) and all(
        all(isinstance(x, SCALAR) or isinstance(x, list) for x in v.values()) for v in d.values())


def matrix(title: str, d: dict[str, dict[str, Any]], first: str = "") -> Table:
    cols: list[str] = []
    for v in d.values():
        cols += [k for k in v if k not in cols]
    names = [NAMES.get(name, str(name)) for name in d]
    if len(cols) > MAX_COLUMNS and len(names) < len(cols):  # wide: one row per field instead
        return Table(title, [first] + names, [[label(c)] + [format_value(c, v.get(c)) for v in d.values()]
                                              for c in cols])
    rows = [[n] + [format_value(c, v.get(c)) for c in cols] for n, v in zip(names, d.values())]
    return Table(title, [first] + [label(c) for c in cols], rows)


def records(title: str, items: list[dict[str, Any]]) -> Table:
    """A list of flat records as a table, the first MAX_LIST_ROWS rows and a count of the rest."""
    cols: list[str] = []
    for r in items:
        cols += [k for k in r if k not in cols]
    rows = [[format_value(c, r.get(c)) for c in cols] for r in items[:MAX_LIST_ROWS]]
    if len(items) > MAX_LIST_ROWS:
        rows.append([f"… {len(items) - MAX_LIST_ROWS} more"] + [""] * (len(cols) - 1))
    return Table(title, [label(c) for c in cols], rows)


def curve_text(points: list[dict[str, Any]]) -> str:
    """'12 points, loss 1.23 → 0.456' for a logged curve (its figure, if any, is drawn apart)."""
    metric = next((k for k in points[0] if k != "step"), None)
    if metric is None:
        return f"{len(points)} points"
    first, last = points[0].get(metric), points[-1].get(metric)
    if len(points) == 1 or not isinstance(first, (int, float)) or not isinstance(last, (int, float)):
        return f"{len(points)} point{'s' if len(points) > 1 else ''}, {metric} {format_value(metric, last)}"
    return f"{len(points)} points, {metric} {change(first, last)}"


def _flat(v: Any) -> bool:
    return isinstance(v, dict) and bool(v) and all(isinstance(x, SCALAR) for x in v.values())


def tables_of(title: str, outputs: dict[str, Any], skip: tuple[str, ...] = (),
              first: list[list[str]] | None = None) -> list[Table]:
    """A stage's outputs as tables: its scalar fields as 'field | value' rows (after `first`; lists
    summarised, curves described), then sub-tables for what is nested: sibling dicts of scalars
    side by side in one table (dev_before / dev_after), a dict of such dicts as one table (per
    type, per mode), a list of records as rows, anything deeper recursively."""
    head = Table(title, ["field", "value"], list(first or []))
    subs: list[Table] = []
    items = [(k, v) for k, v in outputs.items() if k not in skip]
    flat = {k: v for k, v in items if _flat(v)}
    if len(flat) >= 2:
        subs.append(matrix(f"{title} › {' / '.join(label(k) for k in flat)}", {label(k): v for k, v in flat.items()}))
    for key, v in items:
        name = f"{title} › {label(key)}"
        if isinstance(v, dict):
            if not v or (key in flat and len(flat) >= 2):
                continue
            if _flat(v):
                subs.append(Table(name, ["field", "value"], [[label(k), format_value(k, x)] for k, x in v.items()]))
            elif _homogeneous(v):
                subs.append(matrix(name, v))
            else:
                subs += tables_of(name, v)
        elif is_curve(v):
            head.rows.append([label(key), curve_text(v)])
        elif isinstance(v, list) and v and all(isinstance(r, dict) for r in v):
            subs.append(records(name, v))
        else:
            head.rows.append([label(key), format_value(key, v)])
    return ([head] if head.rows else []) + subs
