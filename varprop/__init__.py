"""varprop: how signal and gradient variance travel through deep networks."""

__version__ = "0.1.0"
