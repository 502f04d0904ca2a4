"""What fixes the floating-point results of a generation: thread count, algorithms, precision.

A unit's bytes are a function of its inputs *and* of how torch computes: on CPU, oneDNN and MKL
split the reductions of convolutions and matrix products across the intra-op threads, and the
split (hence the order of the float additions, hence the rounding) depends on the thread
count. A 1-thread and a 2-thread run of the same unit differ in the last bits of ``eps``, and
a few uint8 pixels of the output differ after 15 steps. The ambient thread count is whatever
the process happens to have (all cores in-process, 1 in a dask nanny worker, a share of the
cores in a local worker), so :class:`Numerics` records the settings in the job's spec and
:meth:`Numerics.applied` imposes them around every unit, in every worker.

Threads are set in the thread that computes (OpenMP's thread count is per thread: a setting
made in another thread does not reach a dask or Qt worker thread) and restored afterwards,
so the settings never leak into the caller.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["DEFAULT_THREADS", "MATMUL_PRECISIONS", "Numerics", "legacy_numerics"]


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS, Windows
        return max(1, os.cpu_count() or 1)


#: Intra-op threads of a unit by default: 4, the same on every machine with at least 4 cores
#: (most), fast enough on a workstation; on a machine with fewer cores, one per core, because
#: 4 threads on 2 cores ran a generation 1.84x slower (45.8 s vs 24.9 s for a 512 px pair,
#: measured side by side). The count is recorded with every job and generated region, so a
#: result made on a small machine is reproduced elsewhere with ``--threads`` of that record.
DEFAULT_THREADS = min(4, usable_cores())
MATMUL_PRECISIONS = ("highest", "high", "medium")
AUTOCASTS = ("bf16", "none")

_lock = threading.Lock()
_depth = 0
_saved: dict[str, Any] = {}


@dataclass(frozen=True)
class Numerics:
    """The settings that determine a unit's floating-point results.

    Attributes
    ----------
    threads
        torch intra-op threads every unit runs with, whatever the executor or machine.
    deterministic
        ``torch.use_deterministic_algorithms`` (warn only: an op that has no deterministic
        kernel warns) and cuDNN's deterministic, non-benchmark mode during units.
    matmul_precision
        ``torch.set_float32_matmul_precision`` during units; ``"highest"`` keeps float32
        products in float32 (``"high"``/``"medium"`` allow TF32/bf16 kernels).
    cuda_autocast
        ``"bf16"``: bf16 autocast on CUDA devices; ``"none"``: float32 there too. CPU units
        always run in float32.
    """

    threads: int = DEFAULT_THREADS
    deterministic: bool = True
    matmul_precision: str = "highest"
    cuda_autocast: str = "bf16"

    def __post_init__(self) -> None:
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise ValueError(f"numerics threads must be a whole number >= 1, got {self.threads!r}")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(
                f"matmul precision must be one of {', '.join(MATMUL_PRECISIONS)}, "
                f"got {self.matmul_precision!r}"
            )
        if self.cuda_autocast not in AUTOCASTS:
            raise ValueError(
                f"cuda autocast must be one of {', '.join(AUTOCASTS)}, got {self.cuda_autocast!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``numerics`` record of ``spec.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Numerics:
        """Read :meth:`to_dict`'s form; unknown fields are an error (a newer or damaged spec)."""
        if not isinstance(d, dict):
            raise ValueError(f"numerics record must be an object, got {d!r}")
        unknown = set(d) - {"threads", "deterministic", "matmul_precision", "cuda_autocast"}
        if unknown:
            raise ValueError(
                f"unknown numerics fields {sorted(unknown)}: the job was written by a newer "
                "napari-teramind (upgrade) or its spec.json is damaged"
            )
        return cls(**d)

    def bf16(self, device: Any) -> bool:
        """Whether units on ``device`` run under bf16 autocast."""
        return self.cuda_autocast == "bf16" and str(device).startswith("cuda")

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Run the body under these settings; the previous ones are restored on exit.

        The thread count is set for the calling thread (where the unit computes) and restored
        there. The process-wide flags (deterministic algorithms, matmul precision, cuDNN) are
        saved by the first of several concurrent bodies and restored by the last, so threads
        running units side by side do not undo each other's settings.
        """
        import torch

        global _depth
        with _lock:
            if _depth == 0:
                _saved.update(
                    deterministic=torch.are_deterministic_algorithms_enabled(),
                    warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
                    matmul=torch.get_float32_matmul_precision(),
                    cudnn_det=torch.backends.cudnn.deterministic,
                    cudnn_bench=torch.backends.cudnn.benchmark,
                    cudnn_tf32=torch.backends.cudnn.allow_tf32,
                )
            _depth += 1
            if self.deterministic:
                # cuBLAS is deterministic only with a fixed workspace; set before its first use
                os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            # warn_only: an op without a deterministic kernel warns rather than failing a run
            torch.use_deterministic_algorithms(self.deterministic, warn_only=True)
            torch.set_float32_matmul_precision(self.matmul_precision)
            torch.backends.cudnn.deterministic = self.deterministic
            torch.backends.cudnn.benchmark = not self.deterministic and _saved["cudnn_bench"]
            torch.backends.cudnn.allow_tf32 = self.matmul_precision != "highest"
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)
            with _lock:
                _depth -= 1
                if _depth == 0:
                    torch.use_deterministic_algorithms(
                        _saved["deterministic"], warn_only=_saved["warn_only"]
                    )
                    torch.set_float32_matmul_precision(_saved["matmul"])
                    torch.backends.cudnn.deterministic = _saved["cudnn_det"]
                    torch.backends.cudnn.benchmark = _saved["cudnn_bench"]
                    torch.backends.cudnn.allow_tf32 = _saved["cudnn_tf32"]


def legacy_numerics(executor: str, cpu_workers: int = 1) -> Numerics:
    """The settings a job written before the ``numerics`` record effectively ran with.

    Such jobs ran with the ambient thread count of their workers: the driver's torch default
    in-process, one thread in a dask (nanny) worker, and ``os.cpu_count() // CPU workers`` in a
    local worker process. Resuming with that count (on the same kind of machine) continues the
    job as it was started; it is then pinned, so every later resume uses the same.
    ``cpu_workers`` is the number of CPU worker processes of a ``local`` run.
    """
    import torch

    if executor == "dask":
        threads = 1
    elif executor == "local":
        threads = max(1, (os.cpu_count() or 1) // max(1, int(cpu_workers)))
    else:
        threads = torch.get_num_threads()
    return Numerics(
        threads=int(threads),
        deterministic=False,
        matmul_precision=torch.get_float32_matmul_precision(),
        cuda_autocast="bf16",
    )
