"""Pulling zoo identities: from the repository, or from the Hugging Face Hub into its
standard cache (pinned revision, sha256 of every file checked, progress bars from
huggingface_hub). HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE are honoured; when the Hub cannot
be reached, files already in the cache are used, with a message."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from ..io_utils import hub_unreachable, sha256
from .manifest import ZooEntry, ZooError, find


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _cached(repo: str, name: str, revision: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    p = try_to_load_from_cache(repo, name, revision=revision)
    return Path(p) if isinstance(p, str) else None


def _discard(path: Path) -> None:
    """Remove a cached file (the snapshot link and the blob it points to)."""
    blob = path.resolve()
    path.unlink(missing_ok=True)
    if blob != path:
        blob.unlink(missing_ok=True)


def pull(entry: ZooEntry, quiet: bool = False) -> Path:
    """The local folder of a zoo identity, downloading what is missing."""
    if not entry.on_hub:
        folder = entry.local_folder
        if not (folder / "identity.json").is_file():
            raise ZooError(f"zoo identity {entry.id!r} should be at {folder}, which holds no "
                           "identity.json (a damaged checkout?)")
        return folder
    from huggingface_hub import constants, hf_hub_download

    repo, rev, files = entry.source["repo"], entry.source["revision"], entry.source["files"]
    folder = None
    unreachable = functools.cache(hub_unreachable)       # one probe per pull, when needed
    for name, want in files.items():
        path = _cached(repo, name, rev)
        if path is not None and not quiet:
            _say(f"{entry.id}: {name} is in the Hugging Face cache ({path.parent})")
        if path is None:
            why = unreachable()
            if why is not None:
                raise ZooError(f"{entry.id}: {name} is not in the Hugging Face cache "
                               f"({constants.HF_HUB_CACHE}) and the Hub cannot be reached "
                               f"({why}); run `fg3dgs zoo pull {entry.id}` where the network "
                               "is open and copy the cache (HF_HOME), or unset HF_HUB_OFFLINE "
                               "if it is set")
            try:
                path = Path(hf_hub_download(repo, name, revision=rev))
            except Exception as exc:    # connection refused, DNS, HTTP errors, timeouts
                raise ZooError(
                    f"{entry.id}: cannot download {name} from {constants.ENDPOINT} "
                    f"({type(exc).__name__}: {str(exc)[:200]}) and it is not in the cache "
                    f"({constants.HF_HUB_CACHE}). Check the network or HF_ENDPOINT, or "
                    "pre-download it where the Hub can be reached.") from exc
        got = sha256(path)
        if got != want:
            _discard(path)
            raise ZooError(f"{entry.id}: {name} from {repo}@{rev[:10]} has sha256 {got[:16]}…, "
                           f"the zoo manifest expects {want[:16]}…; the download is corrupt "
                           "or the file changed. It was removed from the cache; pull again, "
                           "and if it persists the manifest entry is wrong.")
        folder = path.parent
    return folder


def preview(entry: ZooEntry) -> Path | None:
    """The entry's preview image (fetched alone for a Hub entry); None when unavailable."""
    if entry.preview is None:
        return None
    if not entry.on_hub:
        p = entry.local_folder / entry.preview
        return p if p.is_file() else None
    from huggingface_hub import hf_hub_download

    repo, rev = entry.source["repo"], entry.source["revision"]
    cached = _cached(repo, entry.preview, rev)
    if cached is not None or hub_unreachable() is not None:   # no minute of retries offline
        return cached
    try:
        return Path(hf_hub_download(repo, entry.preview, revision=rev))
    except Exception:       # HTTP errors: the picker shows no image
        return None


def resolve_identity(identity: str | Path, quiet: bool = True) -> Path:
    """A run folder as given, or the local folder of a zoo identity (pulled when needed)."""
    p = Path(identity)
    if p.is_dir() or p.suffix in (".json", ".safetensors") and p.exists():
        return p if p.is_dir() else p.parent
    if str(identity).count("/") > 0 or str(identity).startswith("."):
        raise ZooError(f"identity {str(identity)!r}: no such folder")
    return pull(find(str(identity)), quiet=quiet)
