"""Training and held-out material for the sync expert, made with the synthetic generator.

Each clip is a few corpus sentences spoken by a random eSpeak speaker (accent, variant, rate,
pitch; with ``voices="wide"`` the front-end's wide draw: every accent and variant, other
languages' voices reading English, 80-260 words per minute) and lip-synced by one of the
built-in photos, rendered small and fast (no supersampling) and kept in memory as mouth
crops with some context around them (so training can jitter the crop cheaply), from face
boxes of the truth landmarks, and the expert's mel [80, T] of
the clean speech and of ``audio_copies`` augmented copies of it (noise, reverberation,
telephone band, codecs, level, clipping, vocal-tract warp; nothing moves in time). Voices
and sentences are split in two disjoint sets, so held-out clips use speakers and sentences
the expert never heard.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import torch

from ..facemesh import N_LANDMARKS
from ..media import AUDIO_RATE, FPS
from .audio import sync_mel
from .crops import crop_regions, face_boxes, mouth_regions

# Speaker variants used in training; the others (and their pitch range) are held out.
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3")
HELDOUT_VARIANTS = ("m5", "m6", "m7", "f4", "f5")
HELDOUT_SENTENCE_EVERY = 6        # every 6th corpus sentence is held out


CONTEXT = 1.3                    # context crops cover the mouth region scaled by this
CONTEXT_SIZE = (64, 128)


@dataclass
class SyncClip:
    context: np.ndarray    # [N, 64, 128, 3] uint8: the mouth region scaled by CONTEXT
    mel: np.ndarray        # [80, T] sync_mel of the clip's audio
    audio: np.ndarray      # [N * 640] float32, 16 kHz
    identity: str
    voice: str
    text: str
    aug_mels: tuple[np.ndarray, ...] = ()   # sync_mel of augmented copies of the audio

    def __len__(self) -> int:
        return len(self.context)

    def mel_version(self, k: int) -> np.ndarray:
        """The clean mel (k = 0) or augmented copy k (1..); the clean one where this clip
        has fewer copies."""
        return self.aug_mels[k - 1] if 0 < k <= len(self.aug_mels) else self.mel


def context_regions(boxes: np.ndarray) -> np.ndarray:
    """[N, 3] face boxes -> [N, 4] mouth regions scaled by CONTEXT about their centres."""
    r = mouth_regions(np.asarray(boxes, np.float64))
    c, half = (r[:, :2] + r[:, 2:]) / 2, (r[:, 2:] - r[:, :2]) / 2 * CONTEXT
    return np.concatenate([c - half, c + half], -1)


def context_crops(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """uint8 frames [N, H, W, 3], face boxes [N, 3] -> uint8 context crops [N, 64, 128, 3]."""
    out = []
    for f, r in zip(np.array_split(frames, max(1, len(frames) // 128)),
                    np.array_split(context_regions(boxes), max(1, len(frames) // 128))):
        x = torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            c = crop_regions(x, torch.from_numpy(r).float(), CONTEXT_SIZE)
        out.append((c.permute(0, 2, 3, 1).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy())
    return np.concatenate(out)


def split_sentences(held_out: bool) -> list[str]:
    from ..synth import corpus

    return [s for i, s in enumerate(corpus.sentences())
            if (i % HELDOUT_SENTENCE_EVERY == HELDOUT_SENTENCE_EVERY - 1) == held_out]


VOICE_DRAWS = ("speakers", "wide")


def random_voice(rng: random.Random, held_out: bool, voices: str = "speakers"):
    """A voice for a clip: ``speakers``, ordinary English speakers (7 accents, the
    m/f variants, 130-200 words per minute); ``wide``, the front-end's draw (any accent or
    variant, other languages' voices reading English, 80-260 words per minute). Held-out
    clips use :data:`HELDOUT_VARIANTS` either way, the benchmark's variants never."""
    from ..synth.speech import SPEAKER_VOICES, Voice, english_voices, wide_variants, wide_voice

    if voices not in VOICE_DRAWS:
        raise ValueError(f"voices must be one of {', '.join(VOICE_DRAWS)}, got {voices!r}")
    if voices == "wide":
        return wide_voice(rng, HELDOUT_VARIANTS if held_out else wide_variants(HELDOUT_VARIANTS))
    names = [v for v in SPEAKER_VOICES if v in set(english_voices())] or ["en-us"]
    return Voice(name=rng.choice(names),
                 variant=rng.choice(HELDOUT_VARIANTS if held_out else TRAIN_VARIANTS),
                 rate=rng.randint(130, 200), pitch=rng.randint(25, 75),
                 pitch_range=rng.randint(30, 80))


class ClipMaker:
    """Makes :class:`SyncClip` s of one photo (the face rig is built once)."""

    def __init__(self, photo: str, size: int = 192):
        from ..synth.clip import background_colour, output_camera
        from ..synth.face import build_rig
        from ..synth.photo import detect_face, load_photo, person_mask

        image = load_photo(photo)
        face = detect_face(image)
        self.photo, self.size = photo, size
        self.rig = build_rig(image, face, person_mask(image), "blur")
        self.K = output_camera(self.rig, face.points, size, 2.1, 1)
        self.background = background_colour(self.rig)

    def make(self, text: str, voice, seed: int, audio_copies: int = 0,
             babble: np.ndarray | None = None) -> SyncClip:
        """The clip of ``text`` in ``voice``, with ``audio_copies`` augmented mels (drawn
        from ``seed``; ``babble``: other speech the noise may be)."""
        from ..frontend.augment import augment
        from ..synth.clip import animate, animation_tracks, project
        from ..synth.speech import synthesize

        speech = synthesize(text, voice)
        n = max(1, math.ceil(speech.duration * FPS - 1e-9))
        audio = np.zeros(n * AUDIO_RATE // FPS, np.float32)
        audio[:len(speech.audio)] = speech.audio[:len(audio)]
        tracks = animation_tracks(self.rig, speech, n, seed)
        frames = np.empty((n, self.size, self.size, 3), np.uint8)
        landmarks = np.empty((n, N_LANDMARKS, 2))
        for i, (image, _, cam, _) in enumerate(
                animate(self.rig, tracks, self.K, self.size, 1, self.background)):
            frames[i] = image
            landmarks[i] = project(self.K, cam[:N_LANDMARKS])
        rng = np.random.default_rng(seed)
        aug = []
        for _ in range(audio_copies):
            x, warp = augment(audio, rng, other=babble)
            aug.append(sync_mel(x, warp=warp))
        return SyncClip(context_crops(frames, face_boxes(landmarks)), sync_mel(audio), audio,
                        self.photo, voice.espeak_name, text, tuple(aug))


def make_clips(identities: tuple[str, ...], seconds: float, held_out: bool, seed: int,
               size: int = 192, sentences_per_clip: tuple[int, int] = (1, 3),
               progress: bool = True, count: int | None = None, voices: str = "speakers",
               audio_copies: int = 0) -> list[SyncClip]:
    """Clips totalling at least ``seconds`` of speech (or ``count`` clips, when given),
    cycling through ``identities``; voices from the ``voices`` draw (:func:`random_voice`),
    each clip with ``audio_copies`` augmented mels."""
    from tqdm import tqdm

    from ..synth.speech import SpeechError

    rng = random.Random(seed)
    pool = split_sentences(held_out)
    makers = [ClipMaker(p, size) for p in identities]
    clips: list[SyncClip] = []
    total = 0.0
    bar = tqdm(total=round(seconds), unit="s", desc="held-out clips" if held_out else
               "training clips", disable=not progress)
    while (len(clips) < count) if count is not None else (total < seconds):
        maker = makers[len(clips) % len(makers)]
        text = " ".join(rng.sample(pool, rng.randint(*sentences_per_clip)))
        voice, seed_ = random_voice(rng, held_out, voices), rng.randrange(1 << 30)
        try:
            clip = maker.make(text, voice, seed_, audio_copies,
                              clips[-1].audio if clips else None)
        except SpeechError:          # a rare voice and text eSpeak cannot speak: draw again
            if voices == "speakers":
                raise
            continue
        clips.append(clip)
        total += len(clip) / FPS
        bar.update(min(round(seconds) - bar.n, round(len(clip) / FPS)))
    bar.close()
    return clips
