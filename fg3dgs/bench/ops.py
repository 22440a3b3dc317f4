"""Counting the tensor operations a piece of work dispatches: on a GPU each is (about) one
kernel launch, so the count says how much a step bound by launches, not by arithmetic,
costs the CPU. Views and metadata changes launch nothing and are not counted; operations a
library calls past PyTorch's dispatcher (gsplat's CUDA functions) are not seen.
"""

from __future__ import annotations

import re
import traceback
from collections import Counter
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Anchored on the package's own folder: a checkout folder named fg3dgs must not match.
_PACKAGE = Path(__file__).parents[1]       # as in code objects' file names
_FRAME = re.compile(re.escape(str(_PACKAGE)) + r'/([^"]+)", line \d+, in (\w+)')


class OpCounter(TorchDispatchMode):
    """``with OpCounter() as c: ...``; then ``c.total`` operations, ``c.ops`` by operator.

    With ``by_source=True`` each operation is also charged to the innermost ``fg3dgs``
    function that issued it (``c.sources``); backward operations to the function whose
    forward made the autograd node (prefixed ``backward:``), which needs the graph built
    inside the block (anomaly mode records each node's forward stack; slow, for profiling).
    """

    def __init__(self, by_source: bool = False):
        super().__init__()
        self.by_source = by_source
        self.ops: Counter = Counter()
        self.sources: Counter = Counter()
        self._backward_source: str | None = None
        self._anomaly = None
        self._backward = None

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def __enter__(self):
        if self.by_source:
            self._anomaly = torch.autograd.set_detect_anomaly(True, check_nan=False)
            self._anomaly.__enter__()
            self._backward = plain = torch.Tensor.backward

            def backward(t, *args, **kwargs):       # charge each node to its forward's source
                self._label_graph(t.grad_fn)
                try:
                    return plain(t, *args, **kwargs)
                finally:
                    self._backward_source = None

            torch.Tensor.backward = backward
        return super().__enter__()

    def __exit__(self, *exc):
        out = super().__exit__(*exc)
        if self.by_source:
            torch.Tensor.backward = self._backward
            self._anomaly.__exit__(*exc)
        return out

    def _label_graph(self, root):
        seen, todo = set(), [root]
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            where = "backward: " + _innermost(node.metadata.get("traceback_") or [])
            node.register_prehook(lambda grads, w=where: setattr(self, "_backward_source", w))
            todo += [f for f, _ in node.next_functions]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.overloadpacket.__name__ != "detach":
            self.ops[func.overloadpacket.__name__] += 1
            if self.by_source:
                self.sources[self._backward_source
                             or _innermost(traceback.format_stack(limit=60))] += 1
        return func(*args, **(kwargs or {}))


def _innermost(stack_lines) -> str:
    """``path:function`` of the innermost fg3dgs frame in formatted stack lines (or the
    optimiser's step, when that is what the frame called)."""
    for line in reversed(stack_lines):
        if "/torch/optim/" in line:
            return "torch.optim: the optimiser's step"
        m = _FRAME.search(line)
        if m and not m.group(1).startswith("bench/"):
            return f"{m.group(1)}:{m.group(2)}"
    return "(outside fg3dgs: libraries)"
