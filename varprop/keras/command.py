"""The Keras half of ``varprop model FILE.py:FACTORY`` (:mod:`varprop.torch.command`
imports the file, sees a ``keras.Model`` and calls :func:`examine`).

The steps are the PyTorch path's: the audit (:func:`varprop.keras.audit`), the trace
(:func:`varprop.keras.trace`), and theory against the Keras model itself measured
(:func:`varprop.keras.compare` with ``measure="model"``, which needs Keras's torch
backend). ``--input-shape`` is channels last here, as Keras's inputs are.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..reporting.output import UsageError

__all__ = ["examine", "layer_classes", "is_keras_model"]


def is_keras_model(model: Any) -> bool:
    """Whether ``model`` is a ``keras.Model``, without importing keras (a model built
    with keras has it imported already)."""
    import sys
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def layer_classes(result: Any) -> list[str]:
    """The Keras class of each weighted layer of a trace, in its records' order."""
    from ..adapters.measure import weighted_steps
    return [type(result._nodes[id(s.layer)].op).__name__
            for s in weighted_steps(result.network)]


def examine(model: Any, factory: str, shape: tuple[int, ...], *, seeds: int, batch: int,
            init: "str | None", progress: "Callable[[int, int], Any] | None"
            ) -> tuple[Any, list, Any]:
    """Trace, audit and compare a Keras model as ``varprop model`` does.

    Args:
        model: the ``keras.Model`` that ``FACTORY()`` returned.
        factory: its factory's name (for messages).
        shape: ``--input-shape``, batch first, channels last.
        seeds, batch, init, progress: as for :func:`varprop.keras.compare`.

    Returns:
        ``(trace result, findings harmful first, comparison)``.

    Raises:
        UsageError: a shape the model does not take, a model trace cannot read, or a
            Keras backend :func:`varprop.keras.profile` cannot measure on.
    """
    from . import audit, compare, trace
    from .profile import check_backend
    try:
        check_backend("varprop model")
    except NotImplementedError as exc:
        raise UsageError(str(exc)) from None
    dtype = np.dtype(getattr(model, "compute_dtype", "float32") or "float32")
    example = np.random.default_rng(0).standard_normal(shape).astype(
        dtype if dtype.kind == "f" else np.float32)
    try:
        result = trace(model, example, init=init)
    except (TypeError, ValueError) as exc:
        if "does not fit the model's input shape" in str(exc) or "example_input must" in str(exc):
            raise UsageError(f"--input-shape {' '.join(map(str, shape))}: {factory}() does "
                             f"not take it (channels last for Keras): {exc}") from None
        raise UsageError(f"varprop cannot trace {factory}(): {exc}") from None
    findings = sorted(audit(model, example), key=lambda f: not f.harmful)  # stable
    cmp = compare(model, example, seeds=seeds, batch=batch, init=init, progress=progress)
    return result, findings, cmp
