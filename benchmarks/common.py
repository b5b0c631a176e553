"""What every benchmark shares: the machine it ran on, and how it reports."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def machine() -> dict:
    import torch

    from sentitune.hardware import cpu_bf16_flags, cpu_model

    return {
        "cpu": cpu_model(),
        "cpu_bf16_instructions": list(cpu_bf16_flags()),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu",
        "torch": str(torch.__version__),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def emit(result: dict, output: str | None) -> None:
    """Print the result as JSON, and save it to `output` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        Path(output).write_text(text + "\n")
