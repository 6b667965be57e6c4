"""The machine a bench ran on, as `lscpu` reports it: every result file records its CPU and flags."""

from __future__ import annotations

import os
import platform
import subprocess
from typing import Any


def lscpu_fields() -> dict[str, str]:
    """`lscpu`'s "Name: value" rows (stripped); {} where lscpu is missing or fails."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}


def machine(**extra: Any) -> dict[str, Any]:
    """The record every result file keeps of its machine: CPU model, family and flags (timings and the int8
    backends depend on them), core count, platform and load average, plus a bench's own `extra` fields."""
    rows = lscpu_fields()
    return {"cpu": rows.get("Model name") or platform.processor(), "cpu_family": rows.get("CPU family"),
            "cpu_model": rows.get("Model"), "cpus": os.cpu_count(), "flags": rows.get("Flags", ""),
            "platform": platform.platform(), "load_average": [round(x, 2) for x in os.getloadavg()], **extra}
