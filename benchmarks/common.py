"""What every benchmark shares: the machine it ran on, and how it reports."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

LOAD_NOTE = ("the benchmark keeps about one load unit per busy core itself; a start well above "
             "0 means other work shared the machine and absolute speeds are pessimistic")


def machine(load_start: tuple[float, ...] | None = None) -> dict:
    """The machine, and with `load_start` (os.getloadavg() when measuring began) the load
    averages around the measurement: the reader judges whether it ran alone, no script
    claims it."""
    import torch

    from sentitune.hardware import cpu_bf16_flags, cpu_model

    load = {} if load_start is None else {
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "load_note": LOAD_NOTE}
    return load | {
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


def add_run_flags(parser, runs_dir: str) -> None:
    """--runs-dir, --resume and --output: the flags of every benchmark that trains runs."""
    parser.add_argument("--runs-dir", default=runs_dir)
    parser.add_argument("--resume", action="store_true",
                        help="reuse finished runs, continue interrupted ones from checkpoints")
    parser.add_argument("--output", help="also write the JSON here")


def emit(result: dict, output: str | None) -> None:
    """Print the result as JSON, and save it to `output` when given."""
    text = json.dumps(result, indent=2)
    print(text)
    if output:
        Path(output).write_text(text + "\n")
