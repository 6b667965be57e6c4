"""Model FLOPs utilisation: training FLOPs actually done per second over the machine's measured peak.

The peak is measured with torch itself (square fp32 matmuls at the current thread count), which is
the ceiling a PyTorch training step on this CPU can reach.
"""

from __future__ import annotations

import time

import torch


def measure_matmul_peak(n: int = 1024, seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """Best sustained FLOP/s of (n x n) @ (n x n) matmuls over about `seconds`."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(3):  # warm up the BLAS thread pool and caches
        torch.mm(a, b)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        reps = 5
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        dt = time.perf_counter() - t0
        best = max(best, reps * 2.0 * n**3 / dt)
    return best


def mfu(tokens_per_s: float, flops_per_token: float, peak_flops: float) -> float:
    """Fraction of the peak used by training (0..1)."""
    return tokens_per_s * flops_per_token / peak_flops if peak_flops > 0 else 0.0
