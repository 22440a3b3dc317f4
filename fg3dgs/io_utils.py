"""File output helpers: every output is written to a temporary file and moved into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_versioned_json(path: Path, version: int, error: type[Exception]) -> dict:
    """The JSON object of ``path``, whose ``format_version`` must be ``version``; ``error``
    (the caller's error type) says what is wrong otherwise."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format_version") != version:
        found = data.get("format_version") if isinstance(data, dict) else None
        raise error(f"{path} has format version {found}; this fg3dgs reads version {version}")
    return data


def _shipped(name: str, env: str) -> Path:
    """A folder the project ships: $env, else the repository's (a checkout or an editable
    install), else the copy a wheel installs inside the package (``fg3dgs/<name>``)."""
    if os.environ.get(env):
        return Path(os.environ[env])
    here = Path(__file__).resolve().parent
    repo = here.parent / name
    return repo if repo.is_dir() else here / name


def checkpoints_dir() -> Path:
    """``checkpoints/`` (shipped expert, demo identity, zoo manifest); $FG3DGS_CHECKPOINTS
    overrides it."""
    return _shipped("checkpoints", "FG3DGS_CHECKPOINTS")


def assets_dir() -> Path:
    """``assets/`` (sentence corpus, example speech); $FG3DGS_ASSETS overrides it."""
    return _shipped("assets", "FG3DGS_ASSETS")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    An interrupted or failed write leaves any existing file at ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike):
    """Yield a new temporary folder beside ``path``; on success it replaces ``path`` (an
    existing one is removed), on failure it is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def layout_problems(state: dict, want: dict, may_lack: tuple[str, ...] = ()) -> str:
    """What keeps a state dict of tensors from fitting a network's layout ``want`` (key ->
    shape): missing keys (except those ending with one of ``may_lack``), unexpected ones,
    wrong shapes and non-finite values, each counted with a few named; "" if it fits."""
    missing = sorted(k for k in set(want) - set(state) if not (may_lack and k.endswith(may_lack)))
    unexpected = sorted(set(state) - set(want))
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(want[k])})"
             for k in want if k in state and tuple(state[k].shape) != tuple(want[k])]
    broken = sorted(k for k in want if k in state and state[k].is_floating_point()
                    and not state[k].isfinite().all())
    return "; ".join(f"{len(keys)} {name} (e.g. {', '.join(keys[:3])})"
                     for name, keys in (("missing", missing), ("unexpected", unexpected),
                                        ("of the wrong shape", wrong), ("not finite", broken))
                     if keys)


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hugging Face Hub cannot be reached (None when it can): HF_HUB_OFFLINE, or no
    connection to HF_ENDPOINT's host within ``timeout``. One quick probe: huggingface_hub
    itself retries a failed request for most of a minute before it gives up."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"{url.hostname}:{port} cannot be reached ({exc})"
    return None


def free_port() -> int:
    """A free TCP port on 127.0.0.1: bound, read and released, so nothing listens there
    until the caller starts a server on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cache_dir() -> Path:
    """Where downloaded speech is kept: ``$FG3DGS_CACHE``, default ``~/.cache/fg3dgs``."""
    return Path(os.environ.get("FG3DGS_CACHE", Path.home() / ".cache" / "fg3dgs"))


class PackageFetchError(RuntimeError):
    """A Debian package could not be downloaded or unpacked."""


def debian_package(name: str, into: str | os.PathLike) -> Path:
    """Download Debian's package ``name`` with ``apt-get download`` and unpack it with
    ``dpkg-deb -x`` into ``into``/deb (``into`` must exist; the .deb is left there);
    returns that folder. PackageFetchError names what is missing or what failed."""
    import subprocess

    into = Path(into)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise PackageFetchError(f"Debian's {name} package needs apt-get and dpkg-deb "
                                "(Debian or Ubuntu)")
    proc = subprocess.run(["apt-get", "download", name], cwd=into, capture_output=True,
                          text=True)
    debs = list(into.glob(f"{name}_*.deb"))
    if proc.returncode or not debs:
        raise PackageFetchError(f"apt-get download {name} failed (apt-get update first?): "
                                f"{proc.stderr.strip()[-300:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(into / "deb")], check=True)
    return into / "deb"
