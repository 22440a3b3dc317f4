"""Host-to-device uploads that do not make the CPU wait for the GPU."""

from __future__ import annotations

import numpy as np
import torch


def to_device(a: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """A numpy array as a tensor on ``device``. To CUDA it goes through pinned memory without
    blocking: a plain copy makes the CPU wait until the GPU has run everything queued before
    it, and a training step that launches many small kernels cannot afford that wait."""
    t = torch.from_numpy(np.ascontiguousarray(a))
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
