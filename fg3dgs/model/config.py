"""Model configuration (saved in identity.json) and the densification schedule: torch-free,
so that the command line takes its defaults from them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class HashConfig:
    levels: int = 12
    features: int = 2
    log2_table: int = 14
    base_resolution: int = 16
    max_resolution: int = 512

    @property
    def out_dim(self) -> int:
        return 3 * self.levels * self.features

    def resolutions(self) -> list[int]:
        if self.levels == 1:
            return [self.base_resolution]
        g = np.exp((np.log(self.max_resolution) - np.log(self.base_resolution))
                   / (self.levels - 1))
        return [int(np.floor(self.base_resolution * g ** i)) for i in range(self.levels)]


@dataclass
class ModelConfig:
    sh_degree: int = 3
    hash: HashConfig = field(default_factory=HashConfig)
    audio_features: str = "mel"
    audio_in_dim: int = 80
    audio_dim: int = 32
    expr_in_dim: int = 3
    expr_dim: int = 16
    hidden: int = 64               # low-frequency / plain decoder width
    attn_width: int = 32           # high-frequency networks' width
    attn_heads: int = 2
    region_split: bool = True      # False: one Gaussian set and network ("head")
    frequency_aware: bool = True   # False: plain MLP deltas for all regions
    refined: bool = False          # holds the HRPA-refined mouth branch beside the base one
    refined_adapter: bool = False  # the refined mouth reads its features through an
                                   # adapter (encoders.FeatureAdapter)
    init_counts: dict = field(default_factory=lambda: {
        "face": 6000, "eyes": 800, "mouth": 1500, "head_rest": 3000})

    @property
    def regions(self) -> tuple[str, ...]:
        return ("face", "eyes", "mouth") if self.region_split else ("head",)

    @property
    def refined_region(self) -> str:
        """The region whose network HRPA refines: the mouth (the head without region split)."""
        return "mouth" if self.region_split else "head"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        d = dict(d)
        d["hash"] = HashConfig(**d["hash"])
        return cls(**d)


@dataclass
class DensifyConfig:
    start: int = 300
    stop: int = 2500
    every: int = 200
    grad_threshold: float = 0.0002      # mean screen-space gradient norm (NDC units)
    percent_dense: float = 0.01         # clone if max scale below this x scene extent
    min_opacity: float = 0.005
    max_gaussians: dict = field(default_factory=lambda: {
        "face": 60000, "eyes": 10000, "mouth": 20000, "head": 90000})   # per region
    reset_opacity_every: int = 0        # 0: never (short schedules)

    def due_steps(self, n: int) -> range:
        """The steps (1-based) among a stage's first ``n`` at which a pass runs."""
        if self.every <= 0:
            return range(0)
        first = -(-max(self.start, 1) // self.every) * self.every
        return range(first, min(self.stop, n) + 1, self.every)
