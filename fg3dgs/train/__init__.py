"""Training an identity from a preprocessed dataset (``fg3dgs train``)."""

# The training stages in order (here, not in config.py: the command line and the benchmark
# offer them without importing torch)
STAGES = ("static", "deform", "fusion", "hrpa")
PRESETS = ("cpu", "paper")     # config.preset's names


class TrainError(ValueError):
    """A run that cannot start or resume (the message says why). Here, not in trainer.py:
    the modules the trainer is made of raise it too."""


def parse_iterations(text: str) -> dict[str, int]:
    """"STATIC,DEFORM,FUSION[,HRPA]" (the command line's --iterations) -> stage -> count;
    ValueError saying the expected form otherwise."""
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if len(counts) not in (3, 4) or min(counts) < 0:
        raise ValueError(f"--iterations takes three or four counts >= 0, STATIC,DEFORM,"
                         f"FUSION[,HRPA]; got {text!r}")
    return dict(zip(STAGES, counts))


# torch.compile's modes, for ``--compile MODE`` (here, not in config.py: the command line
# offers them without importing torch)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")     # those that add CUDA graphs
