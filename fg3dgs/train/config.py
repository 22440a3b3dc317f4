"""Training configuration and its presets (``--preset cpu|paper``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..model.config import DensifyConfig, HashConfig, ModelConfig
from . import PRESETS, STAGES


@dataclass
class TrainConfig:
    preset: str = "cpu"
    size: int = 256
    batch: int = 1
    iterations: dict = field(default_factory=lambda: {"static": 2000, "deform": 14000,
                                                      "fusion": 5000, "hrpa": 400})
    # Learning rates. Gaussians: the 3DGS defaults (means scaled by the head's extent).
    lr_means: float = 1.6e-4
    lr_means_final: float = 1.6e-6
    lr_quats: float = 1e-3
    lr_scales: float = 5e-3
    lr_opacity: float = 5e-2
    lr_sh: float = 2.5e-3
    lr_hash: float = 1e-2
    lr_face_net: float = 1e-4       # the paper: face network and cross-attention blocks
    lr_other_net: float = 1e-5      # the paper: the other MLPs (encoders, gates, decoders)
    lr_colour: float = 1e-3
    dssim: float = 0.2
    alpha_weight: float = 0.5       # region alpha vs. its mask (stages 1-2), keeps regions apart
    fusion_alpha_weight: float = 0.05
    # fusion: L1 inside the inner lips (their mean, preprocess.masks.mouth_interior) beside
    # the frame's loss: the open mouth is a few hundred of the frame's pixels, and there an
    # under-opened or blurred mouth errs most
    mouth_interior: float = 1.0
    window_margin: int = 24         # px around the eyes / mouth rendered in stages 1-2
    lpips: float = 0.5              # fusion: LPIPS on random patches (where its weights load)
    lpips_patch: int = 64           # side (px) of those square patches (the frame's if smaller)
    lpips_patches: int = 2          # patches per step, uniformly placed inside the frame
    # the audio encoder's lip-shape prior (train/mouth_prior.py); 0 turns it off
    lip_prior: float = 0.1          # weight of its L1 beside the photometric loss
    lip_batch: int = 32             # random training frames' audio per step
    lip_warmup: int = 1000          # steps of the prior alone before the deform stage
    lip_components: int = 8
    audio_copies: int = 4           # voice-varied copies of the clip's audio (augmented)
    audio_augment_p: float = 0.5    # chance that a training frame hears an augmented copy
    sync_weight: float = 0.03       # HRPA: the sync expert's loss beside the fusion loss
    hrpa_crop_l1: float = 1.0       # HRPA: L1 of the expert's mouth crops vs the real ones
    lr_hrpa_net: float = 1e-4       # HRPA: the refined mouth network
    hrpa_adapter: bool = False      # HRPA learns only a feature adapter of the refined mouth
    lr_hrpa_adapter: float = 2e-3   # HRPA: that adapter
    hrpa_other_voices: float = 0.0  # HRPA: share of steps driven by other voices (sync only)
    hrpa_other_minutes: float = 4.0     # HRPA: minutes of other voices' speech made for it
    # HRPA's sync term: 0 (or 1), Wav2Lip's BCE on the in-sync pair; S > 1, InfoNCE of the
    # rendered window against its own audio and that audio shifted by 2..S frames either way
    hrpa_shifts: int = 0
    hrpa_temperature: float = 0.1   # of that InfoNCE (the expert's training temperature)
    hrpa_windows: int = 1           # HRPA: the expert's 5-frame windows rendered per step
    expert: str | None = None       # HRPA's sync expert (None: the shipped one)
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    checkpoint_every: int = 1000
    preview_every: int = 2000
    log_every: int = 50
    seed: int = 0
    backend: str = "auto"
    # torch.compile backend ("inductor") for the networks and the photometric loss's
    # pointwise parts; "" runs eagerly (see docs/benchmarks.md: a step on a GPU is bound
    # by kernel launches)
    compile: str = ""
    compile_mode: str = "default"   # torch.compile's mode: "reduce-overhead" adds CUDA graphs
    model: ModelConfig = field(default_factory=ModelConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def one_offs(self) -> dict[str, dict[str, int]]:
        """stage -> work -> how often a run of this schedule does it besides its steps, as
        ``Trainer.train`` does (a test counts a real run): previews and checkpoints (each
        stage's at its interval and one at its end), densification passes (each over all
        regions) and the lip prior's warm-up steps before the deform stage."""
        out = {}
        for stage in STAGES:
            n = self.iterations.get(stage, 0)
            if n <= 0:
                continue
            work = {"preview": n // self.preview_every + 1,
                    "checkpoint": (n - 1) // self.checkpoint_every + 1}
            if stage == "static" and self.densify.due_steps(n):
                work["densification pass"] = len(self.densify.due_steps(n))
            if stage == "deform" and self.lip_prior > 0 and self.lip_warmup > 0:
                work["lip-prior warm-up step"] = self.lip_warmup
            out[stage] = work
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        # Fields added since the run started take its preset's values.
        d = {"lip_prior": 0.0, **d}     # runs from before the lip prior go on without it
        d = {"audio_copies": 0, **d}    # and those from before voice-varied audio without it
        d = {**preset(d.get("preset", "cpu")).to_dict(), **d}
        d["densify"] = DensifyConfig(**d["densify"])
        d["model"] = ModelConfig.from_dict(d["model"])
        d["iterations"] = {"hrpa": 0, **d["iterations"]}   # runs from before HRPA existed
        return cls(**d)


def preset(name: str, **overrides) -> TrainConfig:
    """``cpu``: 256x256, SH degree 1, a light H3, higher network learning rates for the short
    schedule (fits 60 minutes on 2 cores). ``paper``: the paper's 512x512, SH degree 3,
    3k / 47k / 10k iterations and learning rates (for a CUDA GPU)."""
    if name == "paper":
        cfg = TrainConfig(preset="paper", size=512,
                          iterations={"static": 3000, "deform": 47000, "fusion": 10000,
                                      "hrpa": 2000},
                          densify=DensifyConfig(start=500, stop=15000, every=100,
                                                max_gaussians={"face": 100000, "eyes": 15000,
                                                               "mouth": 35000, "head": 150000},
                                                reset_opacity_every=3000),
                          checkpoint_every=5000, preview_every=5000,
                          model=ModelConfig(sh_degree=3, hash=HashConfig(
                              levels=12, features=2, log2_table=16, max_resolution=1024),
                              init_counts={"face": 20000, "eyes": 3000, "mouth": 5000,
                                           "head_rest": 10000}))
    elif name == "cpu":
        cfg = TrainConfig(preset="cpu", lr_face_net=1e-3, lr_other_net=5e-4, lr_hrpa_net=5e-4,
                          densify=DensifyConfig(start=300, stop=1800, every=200,
                                                max_gaussians={"face": 14000, "eyes": 2500,
                                                               "mouth": 5000, "head": 21000}),
                          model=ModelConfig(sh_degree=1, hash=HashConfig(
                              levels=8, features=2, log2_table=14, max_resolution=256)))
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model_over = {k: overrides.pop(k) for k in ("region_split", "frequency_aware",
                                               "audio_features") if k in overrides}
    if model_over:
        cfg.model = replace(cfg.model, **model_over)
    return replace(cfg, **overrides)
