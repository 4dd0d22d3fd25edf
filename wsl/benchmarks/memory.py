"""Peak memory of a piece of work: the CUDA allocator's peak on a GPU, resident-set growth on
a CPU.

GPU: ``torch.cuda.max_memory_allocated`` since ``torch.cuda.reset_peak_memory_stats``: the most
tensor memory held at once (weights, gradients, optimizer state, activations), without what the
caching allocator keeps in reserve.

CPU: ``tracemalloc`` does not see torch's tensors and ``ru_maxrss`` only ever grows (in a
spawned process it even starts at the parent's size), so the peak is Linux's resident-set
high-water mark ``VmHWM``, which writing ``5`` to ``/proc/self/clear_refs`` resets to the current
size. The result is that peak minus the resident size when the tracker was made. Measure in a
fresh process: memory that an earlier measurement freed but ``malloc`` kept would be reused
without growing the resident set. Without ``/proc`` (not Linux) the peak is unknown (None).
"""

from __future__ import annotations

from pathlib import Path

import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class PeakMemory:
    """Make it before the work (on a CPU, its resident size is the baseline), call
    :meth:`reset_peak` where the measured part starts, then read :meth:`peak_bytes`."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = 0 if device.type == "cuda" else _status_bytes("VmRSS")

    def reset_peak(self) -> None:
        """Forget the peaks so far (the CPU baseline stays)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            _CLEAR_REFS.write_text("5")
        except OSError:
            self.baseline = None  # the high-water mark cannot be reset: peak unknown

    def peak_bytes(self) -> int | None:
        """Peak since :meth:`reset_peak`: allocated bytes (GPU) or resident growth (CPU)."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        peak = _status_bytes("VmHWM")
        return None if peak is None or self.baseline is None else peak - self.baseline


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` in bytes, or None without ``/proc``."""
    try:
        lines = _STATUS.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) * 1024
    return None
