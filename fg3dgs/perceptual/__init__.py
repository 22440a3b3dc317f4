"""Perceptual metrics with their published weights: LPIPS (v0.1, AlexNet; in ``eval`` and in
the fusion loss) and FID (pytorch-fid's Inception-v3). The weights cannot be downloaded here;
where a file is missing the loaders raise :class:`WeightsUnavailable`, saying which file,
where it belongs and how to obtain it, and the metric is reported unavailable.

(The FID of two image sets is :func:`fg3dgs.perceptual.fid.fid`; it is not re-exported here,
where the name ``fid`` is its module's.)"""

from .fid import default_weights as default_fid_weights
from .fid import (
    frechet_distance,
    frechet_distance_of_features,
    inception_features,
    load_fid_inception,
)
from .inception import FIDInceptionV3
from .lpips import LPIPS, default_backbone, default_linear, load_lpips
from .weights import PerceptualWeightsError, WeightsUnavailable, hub_checkpoints

__all__ = ["LPIPS", "load_lpips", "default_backbone", "default_linear", "FIDInceptionV3",
           "load_fid_inception", "default_fid_weights", "inception_features",
           "frechet_distance", "frechet_distance_of_features", "PerceptualWeightsError",
           "WeightsUnavailable", "hub_checkpoints"]
