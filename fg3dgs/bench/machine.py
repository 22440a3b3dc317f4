"""The machine a benchmark ran on, in one line, printed and stored with every result."""
from __future__ import annotations

import os
import platform


def describe_machine() -> str:
    """CPU model and core count, torch version and the GPU where CUDA works."""
    import torch  # (kept off the import of the bench package: its parsers need no torch)

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    desc = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc
