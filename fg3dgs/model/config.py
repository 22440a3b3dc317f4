"""Model configuration (saved in identity.json)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .hash_encoding import HashConfig


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
