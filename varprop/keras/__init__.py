"""varprop for Keras 3 models (``pip install keras``): read a model as a varprop network
and predict, measure and audit its variance at initialization.

* :func:`trace`: a Sequential or functional model as a
  :class:`~varprop.network.Network`, each kernel's law from its configured initializer
  (or its values, or a scheme given by name);
* :func:`init_`: any varprop initializer applied in place, at each layer's true fans;
* :func:`audit`: what is wrong with the model's initialization, layer by layer;
* :func:`profile`: the Keras model itself measured, layer by layer, one record per
  weighted layer lined up with ``varprop.analyze``'s (torch backend);
* :func:`compare`: theory against that measurement (or, ``measure="traced"``, against a
  measurement of the traced network on varprop's kernels, any backend).

The backend is yours: set ``KERAS_BACKEND`` (``"torch"``, ``"jax"``, ``"tensorflow"``)
before keras is first imported. Neither ``import varprop`` nor ``import varprop.keras``
imports keras; each function does when first called. The torch backend is the tested
one. Nothing here imports torch unless Keras's backend does (the shared audit rules
live in :mod:`varprop.adapters`; the law-matching helpers of :mod:`varprop.torch._law`
need numpy and scipy only). docs/keras.md is the user guide.

Example:
    >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
    'torch'
    >>> import keras, varprop.keras
    >>> model = keras.Sequential([keras.Input((32,)),
    ...     keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    >>> [f.kind for f in varprop.keras.audit(model)]
    ['glorot_before_relu']
"""

from __future__ import annotations

from ..adapters.audit import Finding
from ..torch._law import Law  # numpy and scipy only: varprop.torch loads torch lazily
from .audit import audit
from .compare import compare
from .init import init_
from .profile import profile
from .trace import TraceResult, UnsupportedLayerError, trace

__all__ = ["trace", "TraceResult", "UnsupportedLayerError", "Law", "init_", "audit",
           "Finding", "compare", "profile"]
