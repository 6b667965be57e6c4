"""The gate's margin, re-checked on half A with every recorded corpus x model case (issue 28 item 3).

The probe replaces the base when its mean hybrid gain on the queries BM25 misses is positive (`trainer/embedder/
gate.py: hard_gate`, through `beyond`, which this script calls with each margin). Each case's recorded probe gain and standard error are judged again with a margin of
0, 0.5, 1 and 1.645 standard errors against half A's truth (the sign of the labelled hybrid gain; the choosing
half) and half B's (the record). Reads only recorded figures: no model is loaded.

    .venv/bin/python bench/gate_margins.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.embedder.gate import beyond  # noqa: E402
FILES = ("embedder-gate.json", "embedder-squad-full.json")
MARGINS = (0.0, 0.5, 1.0, 1.645)


def main() -> None:
    rows = []
    for name in FILES:
        for r in json.loads((ROOT / "bench" / "results" / name).read_text())["summary"]["rows"]:
            p = r.get("probe") or {}
            rows.append({"file": name, "corpus": r["corpus"], "model": r["model"], "gain": p.get("gain"),
                         "se": p.get("se"), "A": r["gain_A"]["hybrid"], "B": r["gain_B"]["hybrid"]})
    counts = {}
    for m in MARGINS:
        calls = [beyond(r["gain"], r["se"], m) for r in rows]
        counts[str(m)] = {half: sum(c == (r[half] >= 0) for c, r in zip(calls, rows)) for half in ("A", "B")}
    best = max(MARGINS, key=lambda m: (counts[str(m)]["A"], -m))  # ties: the smaller margin, the rule in use
    out = {"command": ".venv/bin/python bench/gate_margins.py", "cases": len(rows), "right_calls": counts,
           "chosen_on_A": best, "rows": rows}
    (ROOT / "bench" / "results" / "gate-margins.json").write_text(json.dumps(out, indent=1) + "\n")
    json.dump({k: out[k] for k in ("cases", "right_calls", "chosen_on_A")}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
