"""Mean-field theory of signal propagation: Gaussian expectations and the maps they feed.

:mod:`.gaussian` integrates an activation against Gaussians (closed forms where they
exist, composite Gauss-Legendre otherwise); :mod:`.meanfield` builds the length and
correlation maps, fixed points (:mod:`.fixed_points` for a whole grid of weight and bias
variances at once), depth scales and the edge of chaos on top of it;
:mod:`.fast` evaluates the same moments one point at a time for :func:`varprop.analyze`,
and :mod:`.limits` gives their limits where a recursion overflowed float64.
"""

from .gaussian import (
    KINDS,
    CrossMoments,
    GaussianMoments,
    gaussian_cross_moments,
    gaussian_expectation,
    gaussian_moments,
)
from .criticality import NoEdgeOfChaosError, edge_of_chaos, jacobian_msv
from .meanfield import (
    DepthScales,
    c_map,
    chi1,
    correlation_fixed_point,
    depth_scales,
    fixed_point,
    q_map,
)

__all__ = [
    "CrossMoments",
    "DepthScales",
    "GaussianMoments",
    "KINDS",
    "NoEdgeOfChaosError",
    "c_map",
    "chi1",
    "correlation_fixed_point",
    "depth_scales",
    "edge_of_chaos",
    "fixed_point",
    "gaussian_cross_moments",
    "gaussian_expectation",
    "gaussian_moments",
    "jacobian_msv",
    "q_map",
]
