"""FG-3DGS: audio-driven 3D Gaussian Splatting talking heads with fine-grained facial control."""

__version__ = "0.1.0"

# The rasterization backends (here, not in render/: the command line offers them without
# importing torch)
BACKENDS = ("auto", "cpu", "gsplat")
