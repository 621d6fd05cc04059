"""Layer types, each one bundle of validation, parameter draw, array forward and
backward, and mean-field rule (see :class:`~varprop.layers.base.Layer` for how to add
one), and the walker that every part of varprop runs over a network."""

from .base import Layer, Step, iter_steps, plain_chain, walk
from .dense import Dense
from .elementwise import Act
from .norm import BatchNorm, GroupNorm, LayerNorm
from .residual import Residual
from .conv import Conv
from .pool import AvgPool, Flatten, GlobalAvgPool, MaxPool
from .recurrent import Recurrent

__all__ = ["Layer", "Step", "walk", "iter_steps", "plain_chain", "Dense", "Act",
           "BatchNorm", "LayerNorm", "Residual", "Conv", "MaxPool", "AvgPool",
           "GlobalAvgPool", "Flatten", "GroupNorm", "Recurrent"]
