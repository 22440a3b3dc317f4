"""The model zoo's manifest: ``checkpoints/zoo.json`` lists the identities the app offers.

Each entry has an id, title, description, licence, audio features, a preview image and a
source: a folder in the repository (``{"path": "identities/NAME"}``, relative to the
manifest) or a Hub repository pinned to a commit with the sha256 of every file
(``{"repo": "OWNER/NAME", "revision": "<40 hex>", "files": {"identity.json": "<sha256>",
...}}``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..io_utils import checkpoints_dir, read_versioned_json

MANIFEST = "zoo.json"
FORMAT_VERSION = 1
REQUIRED_FILES = ("identity.json", "identity.safetensors")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_REV = re.compile(r"^[0-9a-f]{40}$")


class ZooError(ValueError):
    """An unknown identity, a bad manifest entry, or a download that failed its checks."""


@dataclass
class ZooEntry:
    id: str
    title: str
    description: str
    license: str
    audio_features: str
    preview: str | None            # an image among the identity's files, or None
    source: dict
    root: Path = field(repr=False, default=Path("."))   # the manifest's folder
    variants: tuple[str, ...] = ()  # "base" / "refined", where the manifest says

    @property
    def on_hub(self) -> bool:
        return "repo" in self.source

    @property
    def local_folder(self) -> Path | None:
        """The identity's folder for a repository source (None for the Hub)."""
        return None if self.on_hub else (self.root / self.source["path"]).resolve()

    def describe_source(self) -> str:
        if self.on_hub:
            return f"hf://{self.source['repo']}@{self.source['revision'][:10]}"
        return f"{self.source['path']} (shipped with fg3dgs)"


def manifest_path() -> Path:
    """$FG3DGS_ZOO (a zoo.json anywhere), else checkpoints/zoo.json."""
    return Path(os.environ.get("FG3DGS_ZOO", checkpoints_dir() / MANIFEST))


def _entry(d: dict, root: Path, where: str) -> ZooEntry:
    need = ("id", "title", "description", "license", "audio_features", "source")
    missing = [k for k in need if k not in d]
    if missing:
        raise ZooError(f"{where}: entry {d.get('id', '?')!r} lacks {', '.join(missing)}")
    src = d["source"]
    if "path" in src:
        pass
    elif "repo" in src:
        if not _REV.match(str(src.get("revision", ""))):
            raise ZooError(f"{where}: {d['id']!r} must pin its Hub revision to a 40-hex "
                           f"commit, got {src.get('revision')!r}")
        files = src.get("files") or {}
        bad = [f for f, h in files.items() if not _SHA.match(str(h))]
        if bad or not all(f in files for f in REQUIRED_FILES):
            raise ZooError(f"{where}: {d['id']!r} must list {', '.join(REQUIRED_FILES)} "
                           f"(and any other files) with their sha256; bad: {bad or 'missing'}")
    else:
        raise ZooError(f"{where}: {d['id']!r} has a source with neither 'path' nor 'repo'")
    return ZooEntry(d["id"], d["title"], d["description"], d["license"],
                    d["audio_features"], d.get("preview"), src, root,
                    tuple(d.get("variants", ())))


def load_zoo(path: str | Path | None = None) -> list[ZooEntry]:
    """The entries of a manifest (default :func:`manifest_path`)."""
    path = Path(path) if path is not None else manifest_path()
    if not path.is_file():
        raise ZooError(f"no zoo manifest at {path}")
    data = read_versioned_json(path, FORMAT_VERSION, ZooError)
    entries = [_entry(d, path.parent, str(path)) for d in data.get("identities", [])]
    ids = [e.id for e in entries]
    if len(set(ids)) != len(ids):
        raise ZooError(f"{path}: identity ids are not unique: {ids}")
    return entries


def find(identity: str, path: str | Path | None = None) -> ZooEntry:
    entries = load_zoo(path)
    for e in entries:
        if e.id == identity:
            return e
    raise ZooError(f"{identity!r} is neither a run folder nor a zoo identity; the zoo has: "
                   f"{', '.join(e.id for e in entries) or 'nothing'} (`fg3dgs zoo list`)")
