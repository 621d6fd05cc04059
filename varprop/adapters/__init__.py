"""What the framework adapters (:mod:`varprop.torch`, :mod:`varprop.keras`) share, with
no framework imported: nothing here imports torch, keras, jax or tensorflow.

* :mod:`.audit`: the audit's :class:`~varprop.adapters.audit.Finding` and the rules that
  read a traced :class:`~varprop.network.Network` (vanishing/exploding variance, the
  float16 range, identical and constant weights);
* :mod:`.measure`: a measured model's per-layer statistics (numpy arrays, any layout)
  and their assembly into the :class:`~varprop.profile.Profile` that
  :func:`varprop.measure` returns, so that :func:`varprop.compare` lines theory and the
  model's own measurement up;
* :mod:`.run`: the run object that executes a traced network with the model's own
  weights on varprop's kernels.

The weight-law helpers live in :mod:`varprop.torch._law`, which imports numpy and scipy
only (``varprop.torch`` loads its torch-using modules lazily), so reading them does not
import torch either. docs/architecture.md describes the layers of the package.
"""

from __future__ import annotations

__all__: list[str] = []
