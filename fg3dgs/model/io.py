"""Identity checkpoints: ``identity.safetensors`` (tensors) + ``identity.json`` (format
version, model config, audio features, metrics, replay track description, and under
``"files"`` the sha256 of the identity's weight files: identity.safetensors and, once it is
written, replay.safetensors), and under ``"audio_model"`` what its audio features were
computed with (the speech front-end's sha256, the transformers model id).

Loading validates the format version, the config and every tensor's name and shape against
the model the config describes, and says what is wrong when something does not fit. It also
checks every file listed under ``"files"`` against its recorded sha256 (``verify=False``
skips that): a file damaged by bit flips that keep its values finite would otherwise render
silently wrong. Identities written before the record existed have no ``"files"`` and load
unchecked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..io_utils import atomic_output, read_versioned_json, sha256
from .info import FORMAT_VERSION, IdentityError, IdentityInfo
from .replay import INDEX as REPLAY_INDEX

__all__ = ["FORMAT_VERSION", "IdentityError", "IdentityInfo", "META", "WEIGHTS",
           "read_identity", "checked_state", "write_identity", "file_hashes",
           "record_file_hashes"]

WEIGHTS, META = "identity.safetensors", "identity.json"
HASHED = (WEIGHTS, REPLAY_INDEX)             # the weight files identity.json records
_HEX64 = frozenset("0123456789abcdef")


def with_default_buffers(want: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
                         ) -> dict:
    """``state`` with the buffers that states from before them lack taken from ``want`` (a
    model's state dict: its defaults): ``.rigid`` flags (identities and runs from before
    rigid Gaussians have none rigid)."""
    return {**{k: want[k] for k in set(want) - set(state) if k.endswith(".rigid")}, **state}


def write_identity(state: dict[str, torch.Tensor], run: str | Path,
                   extras: dict[str, np.ndarray], info: dict, half: bool = False) -> Path:
    """Write RUN/identity.safetensors (``state``, a model's state dict) + RUN/identity.json
    (``info``, :meth:`IdentityInfo.to_dict`'s keys; ``dtype`` and ``files`` are set here).
    ``extras``: arrays stored beside the weights under "extra." (background plate, pose and
    expression track); ``half`` stores the weights in float16."""
    from safetensors.torch import save_file

    run = Path(run)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() and not k.endswith("bound_min")
                   and not k.endswith("bound_max") else v for k, v in tensors.items()}
    for k, v in extras.items():
        tensors[f"extra.{k}"] = torch.from_numpy(np.array(v))
    head = ("format_version", "config", "counts")
    info = {**{k: info[k] for k in head}, "dtype": "float16" if half else "float32",
            **{k: v for k, v in info.items() if k not in (*head, "dtype", "files")}}
    with atomic_output(run / WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)})
    info["files"] = file_hashes(run)
    with atomic_output(run / META) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
    return run


def file_hashes(run: str | Path) -> dict[str, str]:
    """{name: sha256} of the weight files (:data:`HASHED`) present in RUN."""
    run = Path(run)
    return {f: sha256(run / f) for f in HASHED if (run / f).is_file()}


def record_file_hashes(run: str | Path) -> None:
    """Rewrite RUN/identity.json (atomically) with the sha256 of the weight files now in
    RUN; call it after writing or replacing one of them (the replay index is written after
    the identity). Does nothing in a folder without identity.json."""
    meta_path = Path(run) / META
    if not meta_path.is_file():
        return
    info = json.loads(meta_path.read_text())
    info["files"] = file_hashes(run)
    with atomic_output(meta_path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


def verify_files(run: str | Path, files: dict | None) -> None:
    """Check each file that identity.json lists under "files" against its sha256; raise
    :class:`IdentityError` naming the first that differs. A listed file that is absent is
    left to the loaders (a run folder copied without its replay track still loads);
    an identity.json without "files" (written before fg3dgs recorded them) is not checked."""
    run = Path(run)
    if files is None:
        return
    if not isinstance(files, dict) or not all(
            isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..")
            and isinstance(h, str) and len(h) == 64 and set(h) <= _HEX64
            for n, h in files.items()):
        raise IdentityError(f"{run / META} has an invalid \"files\" record (expected file "
                            "names in the identity's folder mapped to sha256 hex digests)")
    for name, want in files.items():
        p = run / name
        if p.is_file() and sha256(p) != want:
            raise IdentityError(f"{p} does not match the sha256 recorded in {META} (the file "
                                "is corrupted or was changed); re-export or re-download it, "
                                "or pass --no-verify (developers)")


def verify_feature_model(run: str | Path, info: IdentityInfo) -> None:
    """Raise :class:`IdentityError` when the features the identity learnt (identity.json
    ``audio_model``) are not what this installation computes: another speech front-end
    would drive its mouth with numbers it never saw. Identities without the record load
    unchecked."""
    from ..audio_features import feature_model

    want = info.audio_model
    if not want:
        return
    have = feature_model(info.audio_features)
    if have != want:
        raise IdentityError(
            f"{run} was made for {info.audio_features!r} features from {want}, but "
            f"this installation computes them with {have}; re-target the identity it came "
            "from to this front-end (`fg3dgs retarget`), or install the front-end it was "
            "made for")


def read_identity(path: str | Path, verify: bool = True, features: bool = True
                  ) -> tuple[Path, IdentityInfo, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(run folder, identity.json, weights, extras) of a run folder or its identity.json /
    identity.safetensors. ``verify``: check every file identity.json lists under "files"
    (the weights and the replay index) against its recorded sha256, once the weights parse
    and before their tensors are checked (:func:`checked_state`); False skips it
    (developers, for a deliberately edited file). ``features``: with ``verify``, also refuse
    an identity made for other features than this installation computes
    (:func:`verify_feature_model`; False: re-targeting it to them)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise IdentityError(f"{path} does not exist (give a trained run folder, which holds "
                            "identity.json and identity.safetensors)")
    run = path if path.is_dir() else path.parent
    meta_path, weights_path = run / META, run / WEIGHTS
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise IdentityError(f"{run} is not an identity: {p.name} is missing (a trained "
                                "run folder holds identity.json and identity.safetensors)")
    raw = read_versioned_json(meta_path, FORMAT_VERSION, IdentityError)
    info = IdentityInfo.from_dict(raw, str(meta_path))
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise IdentityError(f"{weights_path} is not a readable safetensors file ({exc})") \
            from exc
    if verify:
        verify_files(run, raw.get("files"))
        if features:
            verify_feature_model(run, info)
    extras = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    weights = {k: v for k, v in tensors.items() if not k.startswith("extra.")}
    return run, info, weights, extras


def checked_state(want: dict[str, torch.Tensor], got: dict[str, torch.Tensor],
                  where: str | Path) -> dict[str, torch.Tensor]:
    """``got`` (weights read from ``where``) as a float32 state dict for a model whose state
    dict is ``want``; :class:`IdentityError` on a missing, unexpected, misshapen or
    non-finite tensor."""
    got = with_default_buffers(want, got)
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    if missing or unexpected:
        raise IdentityError(f"{where} does not match its config: missing "
                            f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                            f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
    for k, v in want.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise IdentityError(f"{where}: tensor {k} has shape "
                                f"{list(got[k].shape)}, the config needs {list(v.shape)}")
        if not torch.isfinite(got[k].float()).all():
            raise IdentityError(f"{where}: tensor {k} contains NaN or infinity")
    return {k: v.float() if v.is_floating_point() else v for k, v in got.items()}
