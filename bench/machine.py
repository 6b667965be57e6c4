"""The machine a bench ran on, as `lscpu` reports it: every result file records its CPU and flags."""

from __future__ import annotations

import subprocess


def lscpu_fields() -> dict[str, str]:
    """`lscpu`'s "Name: value" rows (stripped); {} where lscpu is missing or fails."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
