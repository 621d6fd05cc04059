"""The recurrent theory put beside a user's recurrent layer that an adapter measures.

``varprop.torch`` and ``varprop.keras`` measure a recurrent layer of a user's model as
one op (docs/torch.md and docs/keras.md, "Measured-only ops") and put beside it what
varprop's recurrent theory predicts for the state it hands on: the Elman mean field
(:func:`~varprop.recurrent.analyze_rnn`, docs/recurrent.md) for a simple RNN, the gated
one (:func:`~varprop.recurrent.gated.analyze_gated`, docs/gated.md) for an LSTM or GRU.
Each adapter reads the layer's laws its own way (PyTorch: from the parameters; Keras:
from the configured initializers) and builds the spec; the prediction and its wording
live here, once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import SimpleRNN

__all__ = ["theory_beside"]

_RULES = {"elman": "Elman mean field (docs/recurrent.md)",
          "gated": "gated mean field (docs/gated.md)"}
_LABELS = {"elman": "Elman theory", "gated": "gated theory"}


def theory_beside(spec: Any, steps: int, in_var: float, *, last: bool, source: str
                  ) -> dict[str, Any]:
    """The predicted variance of the state a recurrent layer hands on.

    Args:
        spec: a :class:`~varprop.recurrent.SimpleRNN` or a gated cell
            (:class:`~varprop.recurrent.gated.LSTM`, :class:`~varprop.recurrent.gated.GRU`).
        steps: the sequence length.
        in_var: the measured variance of the layer's input; the theory takes the inputs
            as independent Gaussians of that variance.
        last: True when the layer hands on its last step's state, False for every step's
            (then the prediction is the mean over steps of the per-step variance).
        source: where the weights' laws were read, for the ``rule`` text.

    Returns:
        ``{"cell", "label", "var", "what", "rule", "approximate"}``: ``label`` is
        ``"Elman theory"`` or ``"gated theory"`` (the tables write "<label> beside it");
        ``approximate`` names the approximations the theory itself flags
        (docs/recurrent.md), empty when none.
    """
    if isinstance(spec, SimpleRNN):
        from .theory import analyze_rnn
        profile = analyze_rnn(spec, steps, input_var=in_var)
        kind = "elman"
    else:
        from .gated import analyze_gated
        profile = analyze_gated(spec, steps, input_var=in_var)
        kind = "gated"
    values = [r.a_var for r in profile]
    approx = sorted({a["detail"] for a in profile.meta.get("approximations", [])})
    var = values[-1] if last else np.mean(values)
    return {"cell": spec.describe(), "label": _LABELS[kind], "var": float(var),
            "what": "Var[h] at the last step" if last else "Var[h] over the steps",
            "rule": f"{_RULES[kind]}, {source}, Gaussian inputs of the measured input "
                    "variance",
            "approximate": approx}
