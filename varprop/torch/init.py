"""Any varprop initializer applied to a PyTorch model in place: :func:`init_`.

The fans are the layer's true ones (:func:`varprop.compute_fans`): a grouped
convolution's fan-out is divided by its groups, and a transposed convolution's kernel
``(in, out // groups, *k)`` has its fans swapped. PyTorch's own
``torch.nn.init._calculate_fan_in_and_fan_out`` reads dims 1 and 0 whatever the layer,
so its ``kaiming_*_`` on a ``ConvTranspose`` scales by the wrong fan (pytorch issue
23854); ``init_`` does not. Likewise ``nn.MultiheadAttention``'s packed ``in_proj_weight``
``(3d, d)`` holds three ``(d, d)`` projections: PyTorch's ``xavier_uniform_`` on the
packed matrix reads fan-out ``3d`` (pytorch issue 166378); ``init_`` draws each
projection at its own fans.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..initializers import Initializer, compute_fans
from ..initializers import get as get_initializer
from ..initializers import resolve_name
from .._validate import as_generator
from ._law import for_layer

__all__ = ["init_", "weighted_modules", "true_fans"]

_CONV = nn.modules.conv._ConvNd


def weighted_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Linear and convolution (transposed too), each once
    (a module registered twice is initialized once), in registration order."""
    seen: set[int] = set()
    out = []
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, _CONV)) and id(m) not in seen:
            seen.add(id(m))
            out.append((name, m))
    return out


def _options(m: nn.Module) -> tuple[int, bool]:
    """(groups, transposed) of a Linear or convolution."""
    if isinstance(m, nn.Linear):
        return 1, False
    return int(m.groups), bool(m.transposed)


def true_fans(m: nn.Module) -> tuple[int, int]:
    """The layer's fans: inputs feeding one output unit, outputs one input feeds
    (:func:`varprop.compute_fans` on its PyTorch-layout weight, groups and transposition
    counted)."""
    groups, transposed = _options(m)
    return compute_fans(tuple(m.weight.shape), layout="torch", groups=groups,
                        transposed=transposed)


def init_(model: nn.Module, scheme: Any, *, seed: Any = None, bias_scheme: Any = None,
          **params: Any) -> nn.Module:
    """Draw every Linear/Conv weight of ``model`` from a varprop initializer, in place.

    Args:
        model: an ``nn.Module``.
        scheme: an initializer name (any of :func:`varprop.available_initializers`,
            PyTorch's ``kaiming_normal_`` spelling too), config dict or
            :class:`~varprop.initializers.Initializer`; drawn at each layer's true fans
            (module doc), whatever layout it was built with.
        seed: None, an int, a SeedSequence or a numpy Generator: one generator draws the
            layers in registration order (weight, then bias), so an int gives the same
            model every time.
        bias_scheme: None sets biases to zero; else a scheme for every bias
            (``"torch_default_bias"`` takes each layer's fan-in).
        **params: the scheme's parameters (``a=0.1``, ``nonlinearity="tanh"``).

    Returns:
        ``model``.

    Raises:
        TypeError: ``model`` not an ``nn.Module``; ``params`` the scheme does not take.
        ValueError: an unknown scheme; a model without Linear or Conv layers.

    Example:
        >>> import torch, varprop.torch
        >>> model = varprop.torch.init_(torch.nn.Linear(512, 256), "he_normal", seed=0)
        >>> round(float(model.weight.detach().var()) * 512, 1)      # Var[W] = 2 / fan_in
        2.0
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"init_: model must be a torch.nn.Module, got {type(model).__name__}")
    init = get_initializer(scheme, **params)
    bias_init = _bias_scheme(bias_scheme)
    layers = weighted_modules(model)
    if not layers:
        raise ValueError("init_: model has no Linear or Conv layer to initialize")
    rng = as_generator(seed)
    with torch.no_grad():
        for name, m in layers:
            groups, transposed = _options(m)
            layer_init = for_layer(init, "torch", groups, transposed)
            shape = tuple(m.weight.shape)
            try:
                w = layer_init(shape, seed=rng, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"init_: scheme {scheme!r} cannot draw {name!r}'s weight of "
                                f"shape {shape}: {exc}") from None
            m.weight.copy_(torch.from_numpy(w))
            if m.bias is None:
                continue
            if bias_init is None:
                m.bias.zero_()
                continue
            b_init = bias_init
            if isinstance(b_init, str):  # torch_default_bias: this layer's fan-in
                b_init = get_initializer(b_init, fan_in=true_fans(m)[0])
            try:
                b = b_init(tuple(m.bias.shape), seed=rng, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"init_: bias_scheme {bias_scheme!r} cannot draw {name!r}'s "
                                f"bias of shape {tuple(m.bias.shape)}: {exc}") from None
            m.bias.copy_(torch.from_numpy(b))
        for name, m in model.named_modules():
            if isinstance(m, nn.MultiheadAttention):
                _attention(name, m, for_layer(init, "torch"), rng)
    return model


def _attention(name: str, m: nn.MultiheadAttention, init: Initializer, rng: Any) -> None:
    """Q, K, V projections of ``m``, each drawn at its own ``(d, d_in)`` fans; their
    biases zero (as PyTorch's own ``_reset_parameters``). Its ``out_proj`` is a Linear,
    drawn with the others."""
    if m.in_proj_weight is not None:
        d = m.embed_dim
        blocks = [m.in_proj_weight[k * d:(k + 1) * d] for k in range(3)]
    else:
        blocks = [m.q_proj_weight, m.k_proj_weight, m.v_proj_weight]
    for block in blocks:
        w = init(tuple(block.shape), seed=rng, dtype=np.float64)
        block.copy_(torch.from_numpy(w))
    if m.in_proj_bias is not None:
        m.in_proj_bias.zero_()


def _bias_scheme(bias_scheme: Any) -> "Initializer | str | None":
    if bias_scheme is None:
        return None
    if isinstance(bias_scheme, str) and resolve_name(bias_scheme) == "torch_default_bias":
        return "torch_default_bias"
    return get_initializer(bias_scheme)
