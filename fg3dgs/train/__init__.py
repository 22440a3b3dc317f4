"""Training an identity from a preprocessed dataset (``fg3dgs train``)."""

# The training stages in order (here, not in config.py: the command line and the benchmark
# offer them without importing torch)
STAGES = ("static", "deform", "fusion", "hrpa")
# torch.compile's modes, for ``--compile MODE`` (here, not in config.py: the command line
# offers them without importing torch)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
CUDA_GRAPH_MODES = ("reduce-overhead", "max-autotune")     # those that add CUDA graphs
