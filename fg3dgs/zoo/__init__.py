"""The model zoo: identities listed in ``checkpoints/zoo.json``, pulled from the repository
or the Hugging Face Hub (torch-free; :mod:`fg3dgs.pipeline.export` makes Hub-ready folders)."""

from .hub import preview, pull, resolve_identity
from .manifest import ZooEntry, ZooError, find, load_zoo, manifest_path

__all__ = ["ZooEntry", "ZooError", "find", "load_zoo", "manifest_path", "preview", "pull",
           "resolve_identity"]
