"""``fg3dgs zoo export RUN --out DIR``: a Hub-ready folder of a trained identity.

The folder holds the identity (weights in float16 by default), its replay track, a preview
image, a model card (``README.md`` with Hub metadata, the measured metrics and how the
identity was trained) and ``zoo_entry.json``, the manifest entry with every file's sha256
(fill in the repo and the commit after uploading, or point ``source.path`` at the folder).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import atomic_directory, sha256
from ..model.identity import FG3DGS
from ..model.info import IdentityInfo
from ..model.io import META, WEIGHTS, record_file_hashes
from ..model.replay import INDEX, VIDEO
from ..preprocess.dataset import Dataset
from ..train import STAGES
from ..train.replay_writer import write_replay
from ..zoo.manifest import ZooError
from .pose_input import canonical_for_track
from .talking_head import TalkingHead

PREVIEW = "preview.png"


@dataclass
class ExportInfo:
    id: str
    title: str
    description: str
    license: str = "other"    # the Hub's id for "not a listed licence"; say which with --license
    notes: str = ""          # markdown appended to the model card (e.g. how to rebuild)


def _metrics_table(metrics: dict | None) -> str:
    if not metrics:
        return ("No evaluation was found in the run (`fg3dgs eval RUN --data DATASET` writes "
                "`eval/metrics.json`).\n")
    rows = ["| variant | PSNR (dB) | SSIM | LMD (px) | expert-C | expert-D | offset |",
            "|---|---|---|---|---|---|---|"]
    for name, m in metrics.get("variants", {"base": metrics}).items():
        s = m.get("sync", {})
        rows.append(f"| {name} | {m['psnr']:.2f} | {m['ssim']:.3f} | {m['lmd_px']:.2f} | "
                    f"{s.get('expert-C', 'n/a')} | {s.get('expert-D', 'n/a')} | "
                    f"{s.get('expert-offset', 'n/a')} |")
    note = (f"\nOn {metrics['frames']} validation frames at {metrics['size']}x"
            f"{metrics['size']}. expert-C / expert-D are SyncNet's protocol scored with "
            "fg3dgs's own lip-sync expert, not LSE-C / LSE-D. " + _perceptual_text(metrics)
            + ".\n")
    return "\n".join(rows) + "\n" + note


def _perceptual_text(metrics: dict) -> str:
    """'LPIPS 0.0312 (base), 0.0309 (refined); FID unavailable' from eval's metrics."""
    variants = metrics.get("variants", {"base": metrics})
    parts = []
    for key, name, fmt in (("lpips", "LPIPS", ".4f"), ("fid", "FID", ".2f")):
        entries = {v: m.get(key, {}) for v, m in variants.items()}
        if all(e.get("available") for e in entries.values()):
            parts.append(f"{name} " + ", ".join(f"{e['value']:{fmt}} ({v})"
                                                for v, e in entries.items()))
        else:
            parts.append(f"{name} unavailable")
    return "; ".join(parts)


def model_card(info: ExportInfo, ident: IdentityInfo, metrics: dict | None) -> str:
    tr = ident.train
    cfg = tr.get("config", {})
    its = cfg.get("iterations", {})
    counts = ident.counts
    hrpa = ident.hrpa or {}
    if "iterations" in hrpa:
        hrpa_text = (f"{hrpa['iterations']} iterations, sync weight {hrpa['sync_weight']}, "
                     f"expert: {hrpa.get('expert', {}).get('source')}")
    else:
        hrpa_text = "skipped" if hrpa else "not run"
    its = {k: its[k] for k in sorted(its, key=lambda k: STAGES.index(k) if k in STAGES else 9)}
    if "refined" in ident.variants:
        variants = ("Variants: base and refined (after the HRPA lip-sync refinement); "
                    "`--variant both` shows them side by side.")
        command = "--variant both"
    else:
        variants = "Variant: base only (no HRPA lip-sync refinement)."
        command = "--variant base"
    licence = ("" if info.license != "other" else
               "\nThe exporter stated no licence: ask the identity's owner before using it.\n")
    return f"""---
license: {info.license}
library_name: fg3dgs
tags:
- talking-head
- gaussian-splatting
- audio-driven
- fg3dgs
---

# {info.title}

{info.description}

An identity for fg3dgs (FG-3DGS, "Toward Fine-Grained Facial Control in
3D Talking Head Generation"): 3D Gaussians of the face, eyes and mouth in canonical head space
with their frequency-aware deformation networks, driven by `{ident.audio_features}`
audio features. {variants}
{licence}
```bash
fg3dgs render --identity {info.id} --audio speech.wav --out talking.mp4 {command}
```

## Training

- preset `{tr.get('preset')}` at {ident.size}x{ident.size}, SH degree
  {ident.config.sh_degree}; iterations: {', '.join(f'{k} {v}' for k, v in its.items())}
- Gaussians: {', '.join(f'{k} {v}' for k, v in counts.items())}
- HRPA: {hrpa_text}
- training frames: {tr.get('frames')}; weights stored as {ident.dtype}

## Metrics

{_metrics_table(metrics)}
{info.notes}"""


def _canonical_from(dataset: str | Path, track_R: np.ndarray) -> dict[str, np.ndarray]:
    """{"canonical": [P, 3]} for an identity exported without its head space's landmarks,
    from the dataset of the same video (pose tracks from other clips need it); nothing
    when the dataset is of another video or has none."""
    ds = Dataset(dataset)
    if ds.canonical is None or len(ds.R) != len(track_R):
        return {}
    return {"canonical": canonical_for_track(np.asarray(ds.canonical, np.float64),
                                             np.asarray(ds.R, np.float64),
                                             np.asarray(track_R, np.float64)
                                             ).astype(np.float32)}


def export_identity(run: str | Path, out: str | Path, info: ExportInfo,
                    dataset: str | Path | None = None, half: bool = True,
                    force: bool = False) -> dict:
    """Write the folder (``force``: replace an existing one; it is removed); returns the zoo
    entry (with the files' sha256)."""

    run, out = Path(run), Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())) and not force:
        raise ZooError(f"{out} already exists; choose another --out, or pass --force to "
                       "replace it (its contents are removed)")
    model = FG3DGS.from_pretrained(run)
    ident = model.info
    has_replay = (run / VIDEO).is_file() and (run / INDEX).is_file()
    if not has_replay and dataset is None:
        raise ZooError(f"{run} has no replay track ({VIDEO}); pass --data DATASET (the "
                       "dataset it was trained on) to write one")
    extras = {k: v.numpy() for k, v in model.extras.items()}
    if "canonical" not in extras and dataset is not None:
        extras.update(_canonical_from(dataset, extras["track_R"]))
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, extras, half=half)
        if has_replay:
            for f in (VIDEO, INDEX):
                shutil.copy2(run / f, tmp / f)
            record_file_hashes(tmp)  # identity.json: sha256 of the copied replay index too
        else:
            write_replay(tmp, dataset, ident.size)   # (records it itself)
        head = TalkingHead(tmp, device="cpu")
        head.save_preview(tmp / PREVIEW)
        metrics_path = run / "eval" / "metrics.json"
        metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else None
        ident_out = IdentityInfo.from_dict(json.loads((tmp / META).read_text()))
        (tmp / "README.md").write_text(model_card(info, ident_out, metrics))
        files = {f: sha256(tmp / f) for f in (META, WEIGHTS, VIDEO, INDEX, PREVIEW)}
        entry = {"id": info.id, "title": info.title, "description": info.description,
                 "license": info.license, "audio_features": ident.audio_features,
                 "variants": list(ident_out.variants), "preview": PREVIEW,
                 "source": {"repo": "OWNER/NAME", "revision": "COMMIT-AFTER-UPLOAD",
                            "files": files}}
        (tmp / "zoo_entry.json").write_text(json.dumps(entry, indent=2) + "\n")
    return entry
