"""The machine a benchmark ran on, named in every result."""

from __future__ import annotations

import os
import platform


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu",
        "torch": str(torch.__version__),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
