"""The speech front-end: any voice to per-frame articulation (``--audio-features artic``)."""

from .network import (
    DEFAULT_FILE,
    MARGIN,
    OUTPUTS,
    ArticulationNet,
    FrontendConfig,
    FrontendError,
    articulation,
    articulation_of_mel,
    load_frontend,
    save_frontend,
)

__all__ = ["DEFAULT_FILE", "MARGIN", "OUTPUTS", "ArticulationNet", "FrontendConfig",
           "FrontendError", "articulation", "articulation_of_mel", "load_frontend",
           "save_frontend"]
