"""Training the speech front-end (``fg3dgs train-audio``) on eSpeak speech of many voices.

Material: corpus sentences spoken by eSpeak NG voices (its English accents, and 23 other
languages reading the English text with their own phonology, 40 % of the utterances), every
voice variant but the held-out ones and the lip-sync benchmark's, 80-260 words per minute,
pitch and range 0-99). Targets at every feature frame
(50 Hz): the synthetic generator's mouth parameters of the phonemes
(:func:`fg3dgs.synth.visemes.viseme_track`) and whether a phoneme other than a pause is
sounding. Each utterance is kept clean once and augmented several times
(:mod:`fg3dgs.frontend.augment`), all timing-preserving. The report gives the frame accuracy
on voices and sentences it never saw, clean and augmented, and, where the ``flite`` program
is installed, on Flite's voices (:mod:`fg3dgs.synth.flite`): speech of another engine, built
from recordings of real speakers; and, where it is downloaded, on recorded human speech
(:mod:`fg3dgs.synth.festvox_ru`: a man reading Russian, the phone timings its corpus came
with). A share of the training speech may come from Flite's voices
(``FrontendTrainConfig.flite``), and the recorded speech's other sentences may be added
(``FrontendTrainConfig.recorded``).
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..frontend_train_config import FrontendTrainConfig
from ..media import AUDIO_RATE
from ..mel import HOP, RATE, n_frames
from .augment import AugmentConfig, augment, log_mel_warped
from .network import OUTPUTS, ArticulationNet, FrontendConfig, save_frontend

# Voice variants held out from training for the report (the benchmark's are never drawn).
HELDOUT_VARIANTS = ("m4", "f2", "edward", "Annie", "klatt2", "steph2", "Gene")
HELDOUT_SENTENCE_EVERY = 6


def _voices(rng: random.Random, held_out: bool):
    from ..synth.speech import wide_variants, wide_voice

    variants = HELDOUT_VARIANTS if held_out else wide_variants(HELDOUT_VARIANTS)
    while True:
        yield wide_voice(rng, variants, 0.0 if held_out else 0.4)


def _sentences(held_out: bool) -> list[str]:
    from ..synth.corpus import sentences

    return [s for i, s in enumerate(sentences())
            if (i % HELDOUT_SENTENCE_EVERY == HELDOUT_SENTENCE_EVERY - 1) == held_out]


def targets(phonemes, num_samples: int) -> np.ndarray:
    """[T, 5] targets at the feature frames (centred on k / 50 s): mouth parameters and
    speech activity."""
    from ..synth.speech import PAUSE
    from ..synth.visemes import viseme_track

    T = n_frames(num_samples)
    times = np.arange(T) / RATE
    mouth = viseme_track(phonemes, times)
    speech = np.zeros(T, np.float32)
    for p in phonemes:
        if p.symbol != PAUSE:
            speech[(times >= p.start) & (times < p.end)] = 1.0
    return np.concatenate([mouth, speech[:, None]], 1).astype(np.float32)


def _utterance(rng: random.Random, pool: list[str]) -> str:
    """One or two sentences of ``pool``, as one utterance."""
    return " ".join(rng.sample(pool, rng.choice([1, 1, 2])))


def _collect(minutes: float, desc: str, progress: bool, next_batch) -> list:
    """[(audio [S], targets [T, 5])]: ``next_batch()`` -> [(audio, phonemes)] called until
    there are about ``minutes`` of speech."""
    from tqdm import tqdm

    from ..media import AUDIO_RATE

    out, total = [], 0.0
    bar = tqdm(total=round(60 * minutes), unit="s", disable=not progress, desc=desc)
    while total < 60 * minutes:
        for audio, phonemes in next_batch():
            out.append((audio, targets(phonemes, len(audio))))
            total += len(audio) / AUDIO_RATE
            bar.update(min(round(total), bar.total) - bar.n)    # (the last batch overshoots)
    bar.close()
    return out


def make_material(minutes: float, held_out: bool, seed: int, progress: bool = True):
    """[(audio [S], targets [T, 5])] of about ``minutes`` of eSpeak speech."""
    from ..synth.speech import SpeechError, synthesize_many

    rng = random.Random(seed * 2 + held_out)
    pool = _sentences(held_out)
    voices = _voices(rng, held_out)

    def batch():
        items = [(_utterance(rng, pool), next(voices)) for _ in range(24)]
        try:
            return [(sp.audio, sp.phonemes) for sp in synthesize_many(items)]
        except SpeechError:         # a refused voice or a crashed engine: the next batch
            return []

    return _collect(minutes, "held-out speech" if held_out else "training speech", progress,
                    batch)


def make_flite_material(minutes: float, held_out: bool, seed: int, progress: bool = True):
    """[(audio [S], targets [T, 5])] of about ``minutes`` of Flite speech
    (:mod:`fg3dgs.synth.flite`) of the training or the held-out sentences."""
    from concurrent.futures import ThreadPoolExecutor

    from ..synth.flite import random_voice, synthesize_flite

    rng = random.Random(seed * 2 + held_out + 7)
    pool = _sentences(held_out)
    with ThreadPoolExecutor(2) as ex:     # each utterance is a flite process
        def batch():
            items = [(_utterance(rng, pool), random_voice(rng)) for _ in range(8)]
            return list(ex.map(lambda it: synthesize_flite(*it), items))

        return _collect(minutes, "held-out speech (Flite)" if held_out else
                        "training speech (Flite)", progress, batch)


def recorded_material(held_out: bool, root: Path | None = None):
    """[(audio [S], targets [T, 5])] of the recorded Russian speech
    (:mod:`fg3dgs.synth.festvox_ru`): its held-out tenth or the rest."""
    from ..synth.festvox_ru import utterances

    return [(audio, targets(phonemes, len(audio)))
            for _, audio, phonemes in utterances(held_out, root)]


def recorded_heldout():
    """(clean features, augmented features) of the recorded Russian speech's held-out
    tenth, a check on a person speaking; or a line saying why there is none (it is not
    downloaded here: 179 MB)."""
    from ..synth.festvox_ru import PACKAGE, available

    if not available():
        return (f"not measured: the recorded Russian speech (Debian's {PACKAGE}, 179 MB) is "
                "not downloaded; python tools/recorded_check.py FRONTEND or train-audio "
                "--recorded fetches it")
    return check_features(recorded_material(held_out=True), 2)


def flite_heldout(cfg: FrontendTrainConfig, progress: bool = True):
    """(clean features, augmented features, which voices) of Flite's voices speaking
    held-out sentences, a check on speech of another engine; or a line saying why there is
    none."""
    from ..synth.flite import VOICES, flite_available

    if not flite_available():
        return "not measured: the flite program is not installed (apt-get install flite)"
    mat = make_flite_material(cfg.heldout_minutes, True, cfg.seed, progress)
    heard = "also in the training speech" if cfg.flite > 0 else "never heard in training"
    return (*check_features(mat, cfg.seed + 2),
            f"Flite's {', '.join(VOICES)}, {heard}; held-out sentences")


def mel_features(material, copies: int, seed: int, aug: AugmentConfig, progress: bool):
    """[(log-mel [T, 80], targets [T, 5])]: every utterance clean and ``copies`` times
    augmented."""
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    out = []
    for i, (audio, tgt) in enumerate(tqdm(material, desc="augmenting", disable=not progress)):
        out.append((log_mel_warped(audio), tgt))
        for _ in range(copies):
            other = material[int(rng.integers(len(material)))][0]
            x, alpha = augment(audio, rng, aug, other=other)
            out.append((log_mel_warped(x, alpha), tgt))
    return out


def check_features(material, seed: int) -> tuple[list, list]:
    """(clean, augmented) features of a held-out set: each utterance clean and once through
    the default augmentation (whatever a training's options), the copies drawn by ``seed``."""
    both = mel_features(material, 1, seed, AugmentConfig(), False)
    return both[0::2], both[1::2]


def _batch(feats, rng: np.random.Generator, batch: int, crop: int):
    mels, tgts, mask = [], [], []
    for _ in range(batch):
        mel, tgt = feats[int(rng.integers(len(feats)))]
        T = len(mel)
        a = int(rng.integers(max(1, T - crop + 1)))
        m = np.full((crop, mel.shape[1]), mel.min(), np.float32)
        t = np.zeros((crop, tgt.shape[1]), np.float32)
        k = np.zeros(crop, np.float32)
        seg = slice(a, min(T, a + crop))
        n = seg.stop - seg.start
        m[:n], t[:n], k[:n] = mel[seg], tgt[seg], 1.0
        mels.append(m)
        tgts.append(t)
        mask.append(k)
    return (torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(tgts)),
            torch.from_numpy(np.stack(mask)))


def concordance(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lin's concordance correlation of each column of [N, C] predictions with the targets
    [C]: 1 only where they agree in mean, spread and order. A per-frame loss alone lets a
    network unsure of a voice answer with the average mouth (a damped mouth); this term
    asks for the targets' spread too."""
    pm, tm = pred.mean(0), target.mean(0)
    cov = ((pred - pm) * (target - tm)).mean(0)
    return 2 * cov / (pred.var(0, unbiased=False) + target.var(0, unbiased=False)
                      + (pm - tm) ** 2 + 1e-8)


@torch.no_grad()
def predict(model: ArticulationNet, feats) -> tuple[np.ndarray, np.ndarray]:
    """(outputs [N, 5], targets [N, 5]) over all frames of ``feats``, the model in eval mode."""
    model.eval()
    return (np.concatenate([model(torch.from_numpy(m)[None])[0].numpy() for m, _ in feats]),
            np.concatenate([t for _, t in feats]))


def jaw_lag_r(model: ArticulationNet, feats, lags=(-1, 0, 1)) -> list[float]:
    """r of the jaw output with the truth's over all frames of ``feats``, the output shifted
    by each lag (in 20 ms frames; a lean to +1: the output comes late)."""
    pred, true = predict(model, feats)
    p, t = pred[:, 0], true[:, 0]
    return [float(np.corrcoef(p[max(0, k):len(p) + min(0, k)],
                              t[max(0, -k):len(t) - max(0, k)])[0, 1]) for k in lags]


def frame_accuracy(model: ArticulationNet, feats) -> dict:
    """Per output: Pearson r, mean absolute error and spread (the std of the output over
    that of the truth) over all frames of ``feats``, and r over the frames where the truth
    speaks (``r_speaking``: the mouth outputs' r over all frames also rewards telling speech
    from pauses); for speech, also the share of frames classified right at 0.5."""
    pred, true = predict(model, feats)
    speaking = true[:, 4] > 0.5

    def r(p, t):
        return float(np.corrcoef(p, t)[0, 1]) if p.std() > 0 and t.std() > 0 else float("nan")

    out = {}
    for j, name in enumerate(OUTPUTS):
        p, t = pred[:, j], true[:, j]
        out[name] = {"r": round(r(p, t), 4), "mae": round(float(np.abs(p - t).mean()), 4),
                     "spread": round(float(p.std() / (t.std() + 1e-12)), 4)}
        if name != "speech" and speaking.sum() > 1:
            out[name]["r_speaking"] = round(r(p[speaking], t[speaking]), 4)
    out["speech"]["accuracy"] = round(float(((pred[:, 4] > 0.5) == (true[:, 4] > 0.5)).mean()),
                                      4)
    out["frames"] = int(len(true))
    return out


def training_material(cfg: FrontendTrainConfig, progress: bool = True) -> list:
    """[(audio [S], targets [T, 5])]: eSpeak's share of ``cfg.minutes``, Flite's share, and
    the recorded speech's nine tenths with ``cfg.recorded``. Bad shares and a missing flite
    raise before any speech is made."""
    for name, value in (("Flite", cfg.flite), ("equaliser", cfg.eq),
                        ("voice quality", cfg.voice_quality)):
        if not 0 <= value <= 1:
            raise ValueError(f"the {name} share must be within 0-1, got {value}")
    if cfg.flite > 0:
        from ..synth.flite import FliteMissing, flite_available

        if not flite_available():
            raise FliteMissing("--flite needs the flite program: on Debian / Ubuntu "
                               "`apt-get install flite`, or pass --flite 0")
    material = make_material(cfg.minutes * (1 - cfg.flite), False, cfg.seed, progress)
    if cfg.flite > 0:
        material += make_flite_material(cfg.minutes * cfg.flite, False, cfg.seed, progress)
    if cfg.recorded:
        material += recorded_material(held_out=False)
    return material


def _accuracy(model: ArticulationNet, held, **about) -> dict | str:
    """The report's section on one held-out set: (clean, augmented[, ...]) features or a
    line saying why it was not measured."""
    if isinstance(held, str):
        return held
    return {"utterances": len(held[0]), **about, "clean": frame_accuracy(model, held[0]),
            "augmented": frame_accuracy(model, held[1])}


def train_frontend(cfg: FrontendTrainConfig, out: str | Path, progress: bool = True,
                   force: bool = False) -> dict:
    """Train, write OUT/speech_frontend.safetensors and OUT/report.json; returns the report."""
    from tqdm import tqdm

    out = Path(out)
    target = out / "speech_frontend.safetensors"
    if target.exists() and not force:
        raise ValueError(f"{target} exists; pass --force to replace it")
    t0 = time.perf_counter()
    train_mat = training_material(cfg, progress)
    aug = AugmentConfig(p_eq=cfg.eq, p_voice=cfg.voice_quality)
    held_mat = make_material(cfg.heldout_minutes, True, cfg.seed, progress)
    t_speech = time.perf_counter() - t0
    feats = mel_features(train_mat, cfg.copies, cfg.seed, aug, progress)
    held_clean, held_aug = check_features(held_mat, cfg.seed + 1)
    held_flite = flite_heldout(cfg, progress)
    held_recorded = recorded_heldout()
    t_feats = time.perf_counter() - t0 - t_speech

    torch.manual_seed(cfg.seed)
    model = ArticulationNet(FrontendConfig(width=cfg.width))
    allmel = np.concatenate([m for m, _ in feats[:: cfg.copies + 1]])
    level = allmel.mean(1, keepdims=True)
    model.mel_mean.copy_(torch.from_numpy((allmel - level).mean(0)))
    model.mel_std.copy_(torch.from_numpy((allmel - level).std(0) + 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.steps,
                                                pct_start=0.1)
    rng = np.random.default_rng(cfg.seed)
    bar = tqdm(range(cfg.steps), desc="training", disable=not progress)
    for _ in bar:
        model.train()
        mel, tgt, mask = _batch(feats, rng, cfg.batch, cfg.crop_frames)
        pred = model(mel).clamp(1e-5, 1 - 1e-5)
        bce = torch.nn.functional.binary_cross_entropy(pred, tgt, reduction="none")
        loss = (bce.mean(-1) * mask).sum() / mask.sum()
        if cfg.ccc:
            on = mask.bool()
            loss = loss + cfg.ccc * (1 - concordance(pred[on][:, :4], tgt[on][:, :4])).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    t_train = time.perf_counter() - t0 - t_speech - t_feats
    report = {
        "config": asdict(cfg),
        "training_seconds_of_speech": round(sum(len(a) for a, _ in train_mat) / AUDIO_RATE),
        "utterances": len(train_mat),
        "heldout": _accuracy(model, (held_clean, held_aug), voices="variants " + ", ".join(
            HELDOUT_VARIANTS) + " (English accents), held-out sentences"),
        "flite": _accuracy(model, held_flite, voices=None if isinstance(held_flite, str)
                           else held_flite[2]),
        "recorded": _accuracy(model, held_recorded, voices=(
            "a man reading Russian (festvox-ru msu_ru_nsh), held-out sentences, "
            + ("his others heard in training" if cfg.recorded else "never heard"))),
        "seconds": {"speech": round(t_speech), "augment": round(t_feats),
                    "train": round(t_train)},
        "hop": HOP,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_frontend(model, target, report)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    return report
