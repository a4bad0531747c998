"""What the compute device is, for front ends that may not import torch themselves (the GUI)."""

from __future__ import annotations

import platform
from pathlib import Path


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def describe_device() -> str:
    """'CUDA (<GPU name>)' when a CUDA GPU is there, else 'CPU (<n> threads)'."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name(0)})"
    return f"CPU ({torch.get_num_threads()} threads)"


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), for benchmark output: speed figures name their CPU."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
