"""What the compute device is, for front ends that may not import torch themselves (the GUI)."""

from __future__ import annotations


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def describe_device() -> str:
    """'CUDA (<GPU name>)' when a CUDA GPU is there, else 'CPU (<n> threads)'."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA ({torch.cuda.get_device_name(0)})"
    return f"CPU ({torch.get_num_threads()} threads)"
