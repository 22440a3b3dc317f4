"""``fg3dgs train-sync``: train our lip-sync expert on synthetic clips and report held-out
pair accuracy and offset detection on clips with unseen voices and sentences."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..io_utils import atomic_output
from ..sync_train_config import SyncTrainConfig
from .audio import mel_windows, sync_mel
from .crops import crop_regions, stack_windows
from .data import CONTEXT, CONTEXT_SIZE, SyncClip, make_clips
from .expert import CROP_H, CROP_W, T_FRAMES, ExpertConfig, SyncExpert
from .io import save_expert
from .metrics import MAX_SHIFT, sync_scores


@dataclass
class Augment:
    """Per-window augmentation: box scale and shift, colour, blur, mirror."""

    scale: tuple[float, float] = (0.9, 1.12)
    shift: float = 0.05               # of the box side
    brightness: float = 0.3
    contrast: float = 0.3
    saturation: float = 0.5
    hue_mix: float = 0.08             # random channel mixing
    blur_p: float = 0.3
    flip_p: float = 0.5

    def scaled(self, k: float) -> Augment:
        """This augmentation at strength k (0: none, 1: as configured)."""
        return Augment(scale=(1 + k * (self.scale[0] - 1), 1 + k * (self.scale[1] - 1)),
                       shift=k * self.shift, brightness=k * self.brightness,
                       contrast=k * self.contrast, saturation=k * self.saturation,
                       hue_mix=k * self.hue_mix, blur_p=k * self.blur_p, flip_p=k * self.flip_p)


class WindowSampler:
    """Batches of (faces [B, 15, 48, 96], mel [B, 1, 80, 16], label [B]) from clips:
    half in sync, half shifted by >= ``min_shift`` frames in the same clip or taken from
    another clip."""

    def __init__(self, clips: list[SyncClip], seed: int, min_shift: int = 2,
                 augment: Augment | None = Augment()):
        self.clips = [c for c in clips if len(c) >= T_FRAMES + 2 * min_shift + 2]
        if not self.clips:
            raise ValueError("no clip is long enough for sync windows")
        self.rng = np.random.default_rng(seed)
        self.min_shift, self.aug = min_shift, augment
        self.strength = 1.0        # scales the augmentation (a curriculum starts it at 0)
        copies = max(len(c.aug_mels) for c in self.clips)
        # share of windows heard through an augmented copy at full strength: as many as
        # each copy (the clean speech is one version of copies + 1)
        self.audio_share = copies / (copies + 1)
        lengths = np.array([len(c) - T_FRAMES + 1 for c in self.clips], np.float64)
        self.p = lengths / lengths.sum()

    def _augment(self, crops: torch.Tensor) -> torch.Tensor:
        """crops [B, 5, 3, h, w] in [0, 1]: one random colour transform per window."""
        a, B = self.aug.scaled(self.strength), crops.shape[0]
        r = lambda lo, hi: torch.from_numpy(self.rng.uniform(lo, hi, (B, 1, 1, 1, 1))).float()
        x = crops * r(1 - a.brightness, 1 + a.brightness)
        mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
        x = (x - mean) * r(1 - a.contrast, 1 + a.contrast) + mean
        grey = x.mean(dim=2, keepdim=True)
        x = (x - grey) * r(1 - a.saturation, 1 + a.saturation) + grey
        mix = torch.eye(3) + torch.from_numpy(
            self.rng.uniform(-a.hue_mix, a.hue_mix, (B, 3, 3))).float()
        x = torch.einsum("bij,btjhw->btihw", mix, x)
        blur = torch.from_numpy(self.rng.random(B) < a.blur_p)
        if blur.any():
            k = torch.tensor([0.25, 0.5, 0.25])
            k2 = (k[:, None] * k[None]).expand(3, 1, 3, 3)
            sel = x[blur].flatten(0, 1)
            x[blur] = F.conv2d(F.pad(sel, (1, 1, 1, 1), mode="replicate"), k2,
                               groups=3).view_as(x[blur])
        flip = torch.from_numpy(self.rng.random(B) < a.flip_p)
        x[flip] = x[flip].flip(-1)
        return x.clamp(0, 1)

    def _shifted(self, clip: SyncClip, i: int, most: int) -> int | None:
        """A random window start of ``clip`` min_shift..most frames from i (None: none)."""
        n = len(clip) - T_FRAMES + 1
        js = [j for j in range(max(0, i - most), min(n, i + most + 1))
              if abs(j - i) >= self.min_shift]
        return int(self.rng.choice(js)) if js else None

    def _partner(self, clip: SyncClip, i: int, label: float) -> tuple[SyncClip, int]:
        """The clip and frame whose audio goes with video window (clip, i)."""
        n = len(clip) - T_FRAMES + 1
        if label:
            return clip, i
        if self.rng.random() < 0.7:          # same clip, shifted by min_shift..3 * 15
            j = self._shifted(clip, i, 3 * MAX_SHIFT)
            if j is not None:
                return clip, j
        other = self.clips[int(self.rng.integers(len(self.clips)))]
        j = int(self.rng.integers(len(other) - T_FRAMES + 1))
        if other is clip and abs(j - i) < self.min_shift:
            j = (i + n // 2) % n
        return other, j

    def sample(self, batch: int):
        """(faces, mel, label): the first half in sync, the rest not."""
        labels = (np.arange(batch) < batch // 2).astype(np.float32)
        faces, (mel,) = self._draw(batch, [lambda b, clip, i: self._partner(clip, i,
                                                                            labels[b])])
        return faces, mel, torch.from_numpy(labels)

    def sample_contrastive(self, batch: int):
        """(faces [B, 15, 48, 96], in-sync mel [B, 1, 80, 16], mel of the same clip shifted
        by min_shift..15 frames [B, 1, 80, 16]) for the contrastive loss."""
        def shifted(b, clip, i):
            j = self._shifted(clip, i, MAX_SHIFT)
            n = len(clip) - T_FRAMES + 1
            return clip, (i + n // 2) % n if j is None else j
        faces, (pos, neg) = self._draw(batch, [lambda b, clip, i: (clip, i), shifted])
        return faces, pos, neg

    def _draw(self, batch: int, partners):
        """Faces of ``batch`` random windows and, for each function in ``partners``
        ((sample b, clip, start i) -> (clip, start j)), the audio windows it picks."""
        rng = self.rng
        ci = rng.choice(len(self.clips), batch, p=self.p)
        ctx, mels = [], [[] for _ in partners]
        for b, c in enumerate(ci):
            clip = self.clips[c]
            i = int(rng.integers(len(clip) - T_FRAMES + 1))
            ctx.append(clip.context[i:i + T_FRAMES])
            # one audio version per window, so its positive and negatives differ in time only
            v = 0
            if self.aug is not None and clip.aug_mels and \
                    rng.random() < self.strength * self.audio_share:
                v = int(rng.integers(1, len(clip.aug_mels) + 1))
            for k, fn in enumerate(partners):
                other, j = fn(b, clip, i)
                mels[k].append(mel_windows(other.mel_version(v), np.array([j]))[0])
        ctx = torch.from_numpy(np.stack(ctx)).permute(0, 1, 4, 2, 3).float() / 255
        # The mouth region inside the context crop, jittered per window (same for 5 frames).
        a = self.aug.scaled(self.strength) if self.aug is not None else None
        s = np.ones(batch) if a is None else rng.uniform(*a.scale, batch)
        d = np.zeros((batch, 2)) if a is None else rng.uniform(-a.shift, a.shift, (batch, 2))
        regions = np.repeat(context_mouth_regions(s, d), T_FRAMES, 0)
        crops = crop_regions(ctx.flatten(0, 1), torch.from_numpy(regions).float()) \
            .view(batch, T_FRAMES, 3, CROP_H, CROP_W)
        if self.aug is not None:
            crops = self._augment(crops)
        return (stack_windows(crops.flatten(0, 1)),
                [torch.from_numpy(np.stack(m)) for m in mels])


def context_mouth_regions(scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """[N, 4] mouth regions in context-crop pixels: scaled by ``scale`` [N] and moved by
    ``shift`` [N, 2] (in face-box sides) from the exact one at the context's centre."""
    h, w = CONTEXT_SIZE
    side = w / CONTEXT                                  # the face box side, in pixels
    cx, cy = w / 2 + shift[:, 0] * side, h / 2 + shift[:, 1] * side
    hw, hh = scale * side / 2, scale * side / 4
    return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], -1)


def contrastive_loss(model: SyncExpert, faces, pos, neg, temperature: float):
    """InfoNCE of each face window against all in-sync audio windows of the batch and the
    shifted ones (the hard negatives), plus Wav2Lip's BCE on the cosine of the in-sync and
    shifted pairs, which keeps the cosine readable as a sync probability. The BCE alone
    sits at chance for thousands of steps; the contrastive term gets it moving."""
    v = model.embed_faces(faces)                                    # [B, D]
    a = model.embed_audio(torch.cat([pos, neg]))                     # [2B, D]
    logits = v @ a.T / temperature                                   # [B, 2B]
    target = torch.arange(len(v))
    nce = F.cross_entropy(logits, target)
    B = len(v)
    p = torch.cat([(v * a[:B]).sum(1), (v * a[B:]).sum(1)]).clamp(1e-6, 1 - 1e-6)
    y = torch.cat([torch.ones(B), torch.zeros(B)])
    return nce + F.binary_cross_entropy(p, y)


def clip_crops(clip: SyncClip) -> torch.Tensor:
    """[N, 3, 48, 96] crops of a clip at its (unaugmented) mouth regions."""
    ctx = torch.from_numpy(clip.context).permute(0, 3, 1, 2).float() / 255
    regions = context_mouth_regions(np.ones(len(ctx)), np.zeros((len(ctx), 2)))
    return crop_regions(ctx, torch.from_numpy(regions).float())


def shifted_mel(clip: SyncClip, shift: int) -> np.ndarray:
    """The clip's mel with its audio delayed by ``shift`` frames (advanced when < 0)."""
    step = len(clip.audio) // len(clip)
    a = clip.audio
    a = np.pad(a, (shift * step, 0))[:len(a)] if shift >= 0 else np.pad(a[-shift * step:],
                                                                         (0, -shift * step))
    return sync_mel(a)


@torch.no_grad()
def evaluate_expert(expert: SyncExpert, clips: list[SyncClip], seed: int = 1,
                    max_true_shift: int = 10) -> dict:
    """Held-out report: balanced pair accuracy (threshold 0.5) and offset detection (the
    audio of each clip delayed by a random shift in +-max_true_shift frames; found within
    +-1 frame among +-15)."""
    expert.eval()
    sampler = WindowSampler(clips, seed, augment=None)
    correct = total = 0
    for _ in range(8):
        faces, mel, y = sampler.sample(64)
        p = expert.sync_prob(mel, faces)
        correct += int(((p > 0.5).float() == y).sum())
        total += len(y)
    rng = np.random.default_rng(seed)
    hits, errors = 0, []
    for clip in clips:
        s = int(rng.integers(-max_true_shift, max_true_shift + 1))
        found = sync_scores(expert, clip_crops(clip), shifted_mel(clip, s)).offset
        errors.append(found - s)
        hits += abs(found - s) <= 1
    return {"pair_accuracy": correct / total, "offset_within_1": hits / len(clips),
            "offset_errors": [int(e) for e in errors], "clips": len(clips)}


def train_expert(cfg: SyncTrainConfig, out: str | Path, progress: bool = True,
                 force: bool = False) -> dict:
    """Generate data, train, evaluate on held-out clips, save ``OUT/sync_expert.safetensors``
    and ``OUT/report.json`` (``force``: replace those of an earlier run). Returns the report."""
    from tqdm import tqdm

    out = Path(out)
    if (out / "sync_expert.safetensors").exists() and not force:
        raise ValueError(f"{out} already holds an expert (sync_expert.safetensors); choose "
                         "another --out, or pass --force to replace it")
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    train_clips = make_clips(cfg.identities, cfg.minutes * 60, False, cfg.seed, cfg.size,
                             progress=progress, voices=cfg.voices,
                             audio_copies=cfg.audio_copies)
    heldout = make_clips(cfg.identities, cfg.heldout_clips * 5.0, True, cfg.seed + 1,
                         cfg.size, sentences_per_clip=(2, 3), progress=progress,
                         count=cfg.heldout_clips, voices=cfg.voices)
    heldout = [trim_clip(c, 5.0) for c in heldout]
    data_s = time.perf_counter() - t0

    model = SyncExpert(ExpertConfig(width=cfg.width))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.05)
    sampler = WindowSampler(train_clips, cfg.seed, cfg.min_shift)
    bar = tqdm(range(cfg.steps), desc="sync expert", disable=not progress)
    t1 = time.perf_counter()
    losses = []
    for step in bar:
        model.train()
        # Curriculum: plain crops first (the task is learnt in a few hundred steps), then
        # the augmentation ramps up so the expert does not learn one face or one colour.
        sampler.strength = float(np.clip((step / cfg.steps - cfg.aug_start)
                                         / (cfg.aug_full - cfg.aug_start), 0, 1))
        faces, pos, neg = sampler.sample_contrastive(cfg.batch)
        loss = contrastive_loss(model, faces, pos, neg, cfg.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}")
    train_s = time.perf_counter() - t1
    report = {"config": asdict(cfg), "train_clips": len(train_clips),
              "train_seconds_of_speech": round(sum(len(c) for c in train_clips) / 25, 1),
              "final_loss": float(np.mean(losses[-100:])), "data_s": round(data_s, 1),
              "train_s": round(train_s, 1),
              "heldout": evaluate_expert(model, heldout, seed=cfg.seed + 2)}
    save_expert(model, out / "sync_expert.safetensors", info={
        "heldout_offset_within_1": report["heldout"]["offset_within_1"],
        "heldout_pair_accuracy": report["heldout"]["pair_accuracy"],
        "trained_with": "fg3dgs train-sync", "steps": cfg.steps, "width": cfg.width})
    with atomic_output(out / "report.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def trim_clip(clip: SyncClip, seconds: float) -> SyncClip:
    """The first ``seconds`` of ``clip`` (its frames, audio and mel; clean audio only)."""
    n = min(len(clip), round(seconds * 25))
    audio = clip.audio[:n * len(clip.audio) // len(clip)]
    return SyncClip(clip.context[:n], sync_mel(audio), audio, clip.identity, clip.voice,
                    clip.text)
