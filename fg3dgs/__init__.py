"""FG-3DGS: audio-driven 3D Gaussian Splatting talking heads with fine-grained facial control."""

__version__ = "0.1.0"
