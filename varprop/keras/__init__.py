"""varprop for Keras 3 models (``pip install keras``): read a model as a varprop network
and predict, measure and audit its variance at initialization.

* :func:`trace`: a Sequential or functional model as a
  :class:`~varprop.network.Network`, each kernel's law from its configured initializer
  (or its values, or a scheme given by name);
* :func:`init_`: any varprop initializer applied in place, at each layer's true fans;
* :func:`audit`: what is wrong with the model's initialization, layer by layer;
* :func:`compare`: theory against measurement on the traced network.

The backend is yours: set ``KERAS_BACKEND`` (``"torch"``, ``"jax"``, ``"tensorflow"``)
before keras is first imported. Neither ``import varprop`` nor ``import varprop.keras``
imports keras; each function does when first called. The torch backend is the tested
one; the law-matching helpers come from :mod:`varprop.torch`, so torch must be
installed. docs/keras.md is the user guide.

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

from ..torch._law import Law
from ..torch.audit import Finding
from .audit import audit
from .compare import compare
from .init import init_
from .trace import TraceResult, UnsupportedLayerError, trace

__all__ = ["trace", "TraceResult", "UnsupportedLayerError", "Law", "init_", "audit",
           "Finding", "compare"]
