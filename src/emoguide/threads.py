"""Per-worker thread caps, so N workers never oversubscribe the cores.

torch, ONNX Runtime, CTranslate2 and llama.cpp each default to every core. A worker of the pool
or a Ray actor calls `cap_threads(n)` before it imports any of them; library code that builds an
ONNX Runtime session, a CTranslate2 model or a llama.cpp context asks `cpu_threads()` for its
thread count instead of leaving it at "all".
"""

from __future__ import annotations

import os
import sys

_ENV = "EMOGUIDE_THREADS"
_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
         "VECLIB_MAXIMUM_THREADS", "CT2_INTER_THREADS")


def cap_threads(n: int) -> None:
    """Cap this process's numeric libraries at `n` threads (call early; safe to call again)."""
    n = max(1, int(n))
    os.environ[_ENV] = str(n)
    for var in _VARS:
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        apply_torch()


def apply_torch() -> None:
    """Apply the cap to torch if it is imported (stages call this after loading torch models)."""
    n = cpu_threads()
    if n is None or "torch" not in sys.modules:
        return
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only settable before the first parallel op; harmless afterwards
        pass


def cpu_threads(default: int | None = None) -> int | None:
    """The capped thread count of this process, or `default` (None: the library's own default)."""
    v = os.environ.get(_ENV)
    if v:
        try:
            return max(1, int(v))
        except ValueError:
            return default
    return default


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
