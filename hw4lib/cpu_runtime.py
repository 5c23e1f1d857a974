"""What makes training fast on a laptop CPU: the C allocator's settings and bfloat16 autocast where it pays.

Two levers, both measured on this project's 2-core machines (figures in ``docs/training.md``):

* :func:`tune_malloc`. A training step of the ``cpu`` preset allocates and frees tensors of tens of megabytes
  (the logits and their gradient alone are ``batch x bptt x 33,278`` floats, 186 MB each at 20 x 70). glibc
  serves blocks above ``M_MMAP_THRESHOLD`` with a fresh ``mmap`` and returns them with ``munmap`` on free, and it
  trims the top of the heap back to the kernel above ``M_TRIM_THRESHOLD``. So every step asks the kernel for the
  same memory again and the kernel zero-fills every page of it on first touch: page faults and memset, on the
  two cores that should be multiplying matrices. Keeping freed memory in the process (no mmap for big blocks,
  no trimming, a generous top pad) turns those into plain reuse: 1,342 -> 1,897 training tokens/s at the ``cpu``
  sizes on a 2-core Zen 4 machine, results unchanged (only where memory comes from changes, not what is
  computed). The price is a resident size that stays at the step's peak instead of shrinking between steps.

* :func:`precision_context`. On CPUs with native bfloat16 (``avx512_bf16`` or AMX: Zen 4, Sapphire Rapids and
  later), oneDNN multiplies bf16 matrices at 150-335 GFLOP/s where MKL reaches 60-125 GFLOP/s in fp32 on the same
  2 cores, and the step is GEMM-bound (the decoder over 33,278 words dominates), so bf16 autocast trained the
  ``cpu`` sizes at 3,357 against 1,897 tokens/s. Autocast keeps the weights, the optimizer and the gradients'
  accumulation in fp32; only the matrix products run in bf16. Without native support the same autocast is
  *emulated* and several times slower (4.6 against 33 GFLOP/s measured on a Zen 2 machine without
  ``avx512_bf16``), and oneDNN refuses to build a bf16 LSTM at all ("could not create a primitive descriptor"),
  so :func:`bf16_supported` probes the real operations once instead of trusting a flag.

The loss stays in fp32 under CPU autocast: ``cross_entropy`` (and ``nll_loss``) are on autocast's fp32 list, so
bf16 logits are cast up before the log-softmax; ``tests/test_laptop.py`` checks it. Evaluation casts logits to
float64 itself (:func:`hw4lib.perplexity.nll_sum`).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys
from typing import Any

import torch

from hw4lib.errors import HW4Error

PRECISIONS = ("fp32", "bf16", "fp16")

# glibc's mallopt parameter numbers (malloc.h) and the values we set.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
MALLOC_SETTINGS = (
    (M_MMAP_MAX, 0),  # never serve a block with its own mmap: freed big blocks stay reusable in the heap
    (M_TRIM_THRESHOLD, 2**30),  # give memory back to the kernel only above 1 GiB of free top-of-heap
    (M_TOP_PAD, 2**28),  # grow the heap 256 MiB at a time: fewer brk calls while the first steps warm up
)

_malloc_tuned = False


def _libc() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # musl and other C libraries have no mallopt or ignore these parameters; gnu_get_libc_version is
        # glibc's own.
        libc.gnu_get_libc_version  # noqa: B018
        libc.mallopt  # noqa: B018
        return libc
    except (OSError, AttributeError):
        return None


def tune_malloc() -> bool:
    """Sets glibc's allocator to keep freed memory (see the module docstring). Returns whether the settings are
    in force. A no-op returning ``False`` off glibc or when ``mallopt`` refuses; calling it again is harmless."""
    global _malloc_tuned
    if _malloc_tuned:
        return True
    libc = _libc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    ok = all(libc.mallopt(param, value) == 1 for param, value in MALLOC_SETTINGS)  # mallopt returns 1 on success
    _malloc_tuned = ok
    return ok


def malloc_trim() -> bool:
    """Returns free heap memory to the kernel now (glibc ``malloc_trim(0)``); ``False`` where unavailable."""
    libc = _libc()
    if libc is None or not hasattr(libc, "malloc_trim"):
        return False
    return bool(libc.malloc_trim(0))


def _probe_cpu_bf16() -> bool:
    """One forward and backward of a tiny embedding, LSTM, linear and cross-entropy under CPU bf16 autocast."""
    try:
        if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
    except (AttributeError, RuntimeError):
        pass  # no such query in this build: let the probe decide
    try:
        gen = torch.Generator().manual_seed(0)
        emb, lstm, lin = torch.nn.Embedding(11, 8), torch.nn.LSTM(8, 8), torch.nn.Linear(8, 11)
        x = torch.randint(0, 11, (3, 2), generator=gen)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(emb(x))
            loss = torch.nn.functional.cross_entropy(lin(out).reshape(-1, 11), x.reshape(-1))
        loss.backward()
        return bool(torch.isfinite(loss)) and loss.dtype == torch.float32
    except RuntimeError:
        return False


@functools.cache
def bf16_supported(device: str = "cpu") -> bool:
    """Whether bf16 autocast runs natively (and at all) on ``device``: on CPU a probe of the real operations
    (the mkldnn bf16 query, then an LSTM step under autocast); on CUDA ``torch.cuda.is_bf16_supported()``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if dev.type != "cpu":
        return False
    return _probe_cpu_bf16()


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """``"auto"`` becomes ``"bf16"`` where :func:`bf16_supported`, else ``"fp32"``; other values are checked."""
    dev = torch.device(device)
    if precision == "auto":
        return "bf16" if bf16_supported(str(dev)) else "fp32"
    if precision not in PRECISIONS:
        raise HW4Error(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)} or 'auto'")
    if precision == "bf16" and not bf16_supported(str(dev)):
        raise HW4Error(
            f"bf16 autocast does not run natively on this {dev.type.upper()} (no avx512_bf16/AMX, or oneDNN has no "
            "bf16 LSTM here): it would be emulated, several times slower than fp32. Use --precision fp32 "
            "(or 'auto', which picks bf16 only where it runs natively)."
        )
    if precision == "fp16" and dev.type != "cuda":
        raise HW4Error("fp16 autocast is for CUDA only; on a CPU use bf16 (where supported) or fp32")
    return precision


def precision_context(precision: str, device: str | torch.device = "cpu") -> contextlib.AbstractContextManager:
    """The autocast context of a precision: bf16 autocast for ``"bf16"`` (CPU or CUDA), fp16 autocast for
    ``"fp16"`` (CUDA only), a null context for ``"fp32"``. Weights, gradients and the optimizer stay fp32.

    Why bf16 and not fp16 on a CPU: bf16 keeps fp32's exponent range, so gradients neither overflow nor underflow
    and no loss scaling is needed; the CPU's fast path (oneDNN's avx512_bf16/AMX kernels) exists for bf16 only.
    fp16 on CUDA would need a ``GradScaler`` inside ``train_batch``; see ``docs/training.md``.
    """
    dev = torch.device(device)
    resolved = resolve_precision(precision, dev)
    if resolved == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
    return torch.autocast(dev.type, dtype=dtype)


def set_threads(threads: int | None) -> int:
    """Sets torch's intra-op threads (``None``: leave as is); returns the number in force. On a 2-core laptop
    where something else keeps one core busy, 1 thread beats 2 (the two threads wait for each other at every
    operation); on an idle machine 2 are faster."""
    if threads:
        torch.set_num_threads(int(threads))
    return torch.get_num_threads()


def runtime_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """What a benchmark or a run records about the machine's numeric runtime."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": getattr(torch.backends.cpu, "get_cpu_capability", lambda: None)(),
        "mkldnn": torch.backends.mkldnn.is_available(),
        "bf16_native": bf16_supported(str(torch.device(device))),
        "malloc_tuned": _malloc_tuned,
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info
