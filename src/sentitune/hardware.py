"""What the machine can compute fast, the numeric precision chosen from it, and the memory a
training used.

bf16 halves the bytes of every activation and, on CPUs with bf16 instructions, runs matrix
products on them: the demo MiniLM scored batch-32 SST-2 sentences 2.3x faster under
`torch.autocast(bfloat16)` on a Xeon with AMX-BF16 and 3.0x faster on an AMD EPYC with
AVX512-BF16 (2 cores each). Without those instructions bf16 is emulated and slower than
fp32, so `auto` only picks it where they exist.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from sentitune.errors import SentituneError

# CPU flags (as Linux names them in /proc/cpuinfo) that make bf16 matrix products fast.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# bf16 inference (`--backend torch-bf16`) is trusted when it gives the fp32 label on this
# share of a run's validation texts (measured at training, on up to BF16_AGREEMENT_ROWS);
# below it, loading the backend warns.
BF16_MIN_AGREEMENT = 0.995
BF16_AGREEMENT_ROWS = 1000


@functools.cache
def cpu_bf16_flags() -> tuple[str, ...]:
    """The bf16 matrix instructions this CPU has, e.g. ('amx_bf16', 'avx512_bf16')."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return tuple(flag for flag in BF16_CPU_FLAGS if flag in present)
        return ()
    # Elsewhere (macOS, Windows) ask torch's own CPU dispatch checks.
    import torch

    checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return tuple(flag for flag, check in checks.items()
                 if getattr(torch.cpu, check, lambda: False)())


@functools.cache
def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    import platform

    return platform.processor() or platform.machine()


@dataclass(frozen=True)
class Precision:
    """A precision setting resolved on one machine; saved in the run's config.yaml."""

    requested: str  # the setting: auto, fp32, bf16 or fp16
    chosen: str  # what training ran in: fp32, bf16 or fp16
    device: str  # cpu or cuda
    reason: str

    def trainer_flags(self) -> dict[str, bool]:
        """TrainingArguments' mixed-precision switches (autocast; weights stay fp32)."""
        return {} if self.chosen == "fp32" else {self.chosen: True}

    def as_dict(self) -> dict:
        return asdict(self)


def resolve_precision(setting: str, *, cuda: bool | None = None,
                      cpu_flags: tuple[str, ...] | None = None) -> Precision:
    """`--precision` on this machine: auto is bf16 (or fp16) on a GPU, bf16 on a CPU with
    bf16 instructions, fp32 on other CPUs. `cuda` and `cpu_flags` default to this machine."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if cuda:
        import torch

        bf16_ok = torch.cuda.is_bf16_supported()
        if setting == "auto":
            support = "with" if bf16_ok else "without"
            return Precision(setting, "bf16" if bf16_ok else "fp16", "cuda",
                             f"auto on a GPU {support} bf16 support")
        return Precision(setting, setting, "cuda", "as requested")
    flags = cpu_bf16_flags() if cpu_flags is None else cpu_flags
    found = f"CPU bf16 instructions: {', '.join(flags) or 'none'}"
    if setting == "fp16":
        raise SentituneError("--precision fp16 needs a GPU; on a CPU use bf16 (fast where the "
                             "CPU has AMX or AVX512-BF16) or fp32")
    if setting == "auto":
        return Precision(setting, "bf16" if flags else "fp32", "cpu", f"auto; {found}")
    return Precision(setting, setting, "cpu", f"as requested; {found}")


class PeakRss:
    """Peak resident memory above its level at the start, sampled in a background thread.

    Not ru_maxrss: that is the process's lifetime high-water mark, so a second run in the
    same process (a test session, a notebook) would report no increase at all.
    """

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.start_mb = self.peak_mb = self._rss_mb()

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())

    @property
    def increase_mb(self) -> float:
        return self.peak_mb - self.start_mb


def peak_memory_mb(rss: PeakRss) -> float:
    """This session's peak: GPU memory allocated on CUDA, else the rise in resident memory."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return rss.increase_mb
