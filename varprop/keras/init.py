"""The Keras layers varprop knows (:func:`layer_kind`, :func:`kernels_of`), the laws of
their kernels, and any varprop initializer applied to a Keras model: :func:`init_`.

Keras draws a kernel ``(*kernel_size, in // groups, out)`` (a Dense one ``(in, out)``)
with the fans of its own ``compute_fans``: ``R * shape[-2]`` and ``R * shape[-1]``, ``R``
the product of the kernel's spatial sizes, whatever the layer. That is varprop's
``layout="keras"`` with ``groups=1``, so a configured initializer read from a layer's
config (:func:`configured_law`) predicts exactly what Keras drew. It is not the layer's
true fan-out for a grouped convolution (``R * out / groups``), nor the true fans of a
transposed or depthwise kernel; :func:`init_` draws at the true ones
(:func:`varprop.compute_fans`).

Keras is imported when a function is first called, with the user's ``KERAS_BACKEND``.
"""

from __future__ import annotations

import hashlib
import math
import warnings
import weakref
from typing import Any

import numpy as np

from .._validate import as_generator
from ..activations import get_activation
from ..initializers import FAN_OPTION_NAMES, Initializer, compute_fans, resolve_name
from ..initializers import get as get_initializer
from ..torch import _law

__all__ = ["init_", "weighted_layers", "kernels_of", "layer_kind", "activation_of",
           "layer_activation", "roles", "input_shape", "same_pads", "to_numpy",
           "configured_law", "kernel_law", "bias_law", "at_fans"]

# layer -> {kernel attribute: (init_'s scheme, digest of the values it drew)}: trace reads
# that scheme while the values are still those
_DRAWN: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def _keras() -> Any:
    import keras  # the backend is the user's: KERAS_BACKEND, set before this import
    return keras


def weighted_layers(model: Any) -> list[tuple[str, Any]]:
    """``(name, layer)`` of every layer with a kernel that :func:`init_` draws (Dense,
    Conv1D/2D/3D, their transposes, DepthwiseConv1D/2D, SeparableConv1D/2D), nested
    models entered, each layer once, in the models' layer order."""
    keras = _keras()
    seen, out = set(), []

    def visit(m: Any) -> None:
        for layer in getattr(m, "layers", []):
            if isinstance(layer, keras.Model):
                visit(layer)
            elif kernels_of(layer) and id(layer) not in seen:
                seen.add(id(layer))
                out.append((layer.name, layer))

    visit(model)
    return out


def kernels_of(layer: Any) -> list[tuple[str, Any, dict[str, Any]]]:
    """``(attribute, variable, true fan options)`` of each kernel of a built layer: a
    grouped convolution's ``groups``, a transposed kernel ``(*k, out, in)``'s
    ``transposed``, a depthwise kernel ``(*k, in, multiplier)``'s ``depthwise``.
    Empty for a layer without kernels (or not built)."""
    L = _keras().layers
    if not getattr(layer, "built", False):
        return []
    if isinstance(layer, L.Dense):
        return [("kernel", _variable(layer, "kernel"), {})]
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        return [("kernel", layer.kernel, {"transposed": True})]
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return [("kernel", layer.kernel, {"depthwise": True})]
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return [("depthwise_kernel", layer.depthwise_kernel, {"depthwise": True}),
                ("pointwise_kernel", layer.pointwise_kernel, {})]
    if isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        return [("kernel", _variable(layer, "kernel"), {"groups": int(layer.groups)})]
    return []


def _variable(layer: Any, attr: str) -> Any:
    """The kernel variable itself (Dense and Conv keep it in ``_kernel``; their
    ``kernel`` property may compute a tensor under LoRA or quantization)."""
    if getattr(layer, "lora_enabled", False) or getattr(layer, "quantization_mode", None):
        raise ValueError(f"{type(layer).__name__} {layer.name!r}: LoRA or quantization is "
                         "enabled; varprop reads and draws plain kernels only")
    var = getattr(layer, "_" + attr, None)
    return getattr(layer, attr) if var is None else var


def at_fans(init: Initializer, **options: Any) -> Initializer:
    """``init`` in Keras's kernel layout ``(..., in, out)`` with the given fan options
    (``groups``, ``transposed``, ``depthwise``; none: Keras's own fans). Schemes whose
    draw ignores the fans, and Keras's named ``input_axes``/``output_axes`` (they fix
    the fans), are returned as they are."""
    if not init.uses_fan_options or getattr(init, "named_axes", False):
        return init
    config = init.get_config()
    config.update({"layout": "keras", "groups": 1, "transposed": False, "depthwise": False,
                   **options})
    return type(init).from_config(config)


def _label(init: Initializer) -> str:
    """``he_normal``, ``random_normal(mean=0.0, stddev=0.05)``: the name and the
    parameters that are not fan options."""
    params = {k: v for k, v in init.get_config().items()
              if k != "name" and k not in FAN_OPTION_NAMES}
    inner = ", ".join(f"{k}={v!r}" for k, v in params.items())
    return f"{init.name}({inner})" if inner else init.name


def from_keras(config: Any) -> "tuple[Initializer | None, str]":
    """A layer config's ``kernel_initializer``/``bias_initializer`` entry as a varprop
    initializer (Keras's fans), or ``(None, why not)``. The config's ``seed`` is dropped:
    the law does not depend on it."""
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    if not isinstance(config, dict) or "class_name" not in config:
        return None, f"not a Keras initializer config: {config!r}"
    if config.get("registered_name") or config.get("module", "keras.initializers") \
            not in ("keras.initializers", "keras.src.initializers"):
        custom = config.get("registered_name") or config["class_name"]
        return None, f"a custom initializer ({custom})"
    inner = dict(config.get("config") or {})
    inner.pop("seed", None)
    try:
        return get_initializer({"class_name": config["class_name"], "config": inner}), ""
    except (TypeError, ValueError) as exc:
        return None, str(exc)


# ---------------------------------------------------------------------- layer kinds
_RECURRENT = {"LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D",
              "ConvLSTM3D", "LSTMCell", "GRUCell", "SimpleRNNCell", "StackedRNNCells"}
# Keras activation names -> varprop's (None: linear); Keras's gelu is the exact (erf) one
_ACTS: dict[str, Any] = {"linear": None, "relu": "relu", "tanh": "tanh", "sigmoid": "sigmoid",
                         "selu": "selu", "elu": "elu", "gelu": "gelu", "silu": "silu",
                         "swish": "silu", "softplus": "softplus", "softsign": "softsign",
                         "leaky_relu": ("leaky_relu", {"negative_slope": 0.2})}
_HEADS = ("softmax", "log_softmax")



def activation_of(spec: Any) -> Any:
    """A Keras activation config as an Activation, None (linear), "softmax", or a
    ``ValueError`` naming it."""
    if isinstance(spec, str) and spec in _ACTS:
        entry = _ACTS[spec]
        if entry is None:
            return None
        return get_activation(*entry[:1], **entry[1]) if isinstance(entry, tuple) \
            else get_activation(entry)
    if spec in _HEADS:
        return "softmax"
    raise ValueError(f"activation {spec!r} has no varprop counterpart (mapped: "
                     f"{', '.join(_ACTS)}; softmax as a head)")


def layer_activation(op: Any) -> Any:
    """What an activation layer computes (as :func:`activation_of`)."""
    L, cfg = _keras().layers, op.get_config()
    if isinstance(op, L.ReLU):
        if cfg.get("max_value") is not None or cfg.get("threshold", 0.0) != 0.0:
            raise ValueError("ReLU with max_value or threshold has no varprop counterpart")
        slope = float(cfg.get("negative_slope", 0.0))
        return get_activation("leaky_relu", negative_slope=slope) if slope else \
            get_activation("relu")
    if isinstance(op, L.LeakyReLU):
        return get_activation("leaky_relu", negative_slope=float(cfg["negative_slope"]))
    if isinstance(op, L.ELU):
        return get_activation("elu", alpha=float(cfg.get("alpha", 1.0)))
    if isinstance(op, L.Softmax):
        return "softmax"
    return activation_of(cfg.get("activation"))


def layer_kind(op: Any) -> tuple[str, str]:
    """``(kind, why)``: "dense", "conv", "act", "norm", "pool", "gap", "flatten",
    "none" (the identity at analysis), "add", "scale", "measured", or "unsupported"."""
    L = _keras().layers
    name = type(op).__name__

    def own(*bases: Any) -> bool:  # the class's own call, not a subclass's
        return any(isinstance(op, b) and type(op).call is b.call for b in bases)

    if name in _RECURRENT:  # LSTM/GRU/SimpleRNN with one output: measured only
        if name in ("LSTM", "GRU", "SimpleRNN") and not getattr(op, "return_state", True):
            return "measured", "a recurrent layer: measured only (docs/keras.md)"
        return "unsupported", "recurrent layers other than LSTM, GRU, SimpleRNN are not traced"
    kinds = (("dense", (L.Dense,)), ("conv", (L.Conv1D, L.Conv2D)),
             ("act", (L.Activation, L.ReLU, L.LeakyReLU, L.ELU, L.Softmax)),
             ("norm", (L.BatchNormalization, L.LayerNormalization, L.GroupNormalization)),
             ("pool", (L.MaxPooling1D, L.MaxPooling2D, L.AveragePooling1D, L.AveragePooling2D)),
             ("gap", (L.GlobalAveragePooling1D, L.GlobalAveragePooling2D)),
             ("flatten", (L.Flatten,)), ("scale", (L.Rescaling,)),
             ("none", (L.InputLayer, L.Dropout, L.SpatialDropout1D, L.SpatialDropout2D,
                       L.AlphaDropout, L.Identity)))
    kind = next((k for k, bases in kinds if own(*bases)), None)
    if kind is None:
        if name == "Add" and type(op).__module__.startswith("keras"):
            return "add", ""  # layers.Add, or keras.ops's add (x + y on Keras tensors)
        return "unsupported", "a layer varprop does not map"
    cfg = op.get_config()
    if cfg.get("data_format", "channels_last") != "channels_last":
        return "unsupported", "data_format='channels_first' (varprop reads channels last)"
    try:
        if kind in ("dense", "conv"):
            activation_of(cfg.get("activation"))
        elif kind == "act":
            layer_activation(op)
    except ValueError as exc:
        return "unsupported", str(exc)
    if kind == "gap" and cfg.get("keepdims"):
        return "unsupported", "keepdims=True (varprop's GlobalAvgPool gives (batch, C))"
    if kind == "norm" and (cfg.get("renorm") or cfg.get("rms_scaling")):
        return "unsupported", "renorm or rms_scaling"
    return kind, ""


def roles(graph: Any) -> dict[str, tuple[str, str]]:
    """Per layer with a kernel in ``graph`` (a :class:`varprop.keras.trace.Graph`):
    ``(what reads its output, the activation reached through normalizations)``, each an
    activation name, "norm" or "other" (a layer used twice keeps "other" where its uses
    differ)."""
    out: dict[str, tuple[str, str]] = {}

    def act_name(node: Any) -> str:
        if node is None or layer_kind(node.op)[0] != "act":
            return "other"
        act = layer_activation(node.op)  # mapped: layer_kind said "act"
        return act.name if hasattr(act, "name") else "other"

    for n in graph.nodes:
        if not kernels_of(n.op):
            continue
        try:
            act = activation_of(n.op.get_config().get("activation", "linear"))
        except ValueError:
            act = "softmax"
        if act is not None:
            role = (act.name,) * 2 if hasattr(act, "name") else ("other", "other")
        else:
            user = graph.follow(n.out)
            if user is not None and layer_kind(user.op)[0] == "norm":
                role = ("norm", act_name(graph.follow(user.out)))
            else:
                role = (act_name(user),) * 2
        prev = out.get(n.op.name)
        out[n.op.name] = role if prev in (None, role) else ("other", "other")
    return out


# ---------------------------------------------------------------------- model inputs
def to_numpy(x: Any) -> np.ndarray:
    """An array, a backend tensor or a Keras variable as a numpy array (a torch tensor
    read directly: Keras's conversion warns under numpy 2)."""
    if isinstance(x, np.ndarray):
        return x
    x = getattr(x, "value", x)  # a Keras variable: its backend tensor
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
        return np.asarray(_keras().ops.convert_to_numpy(x))


def input_shape(model: Any, x: Any) -> tuple[int, ...]:
    """One input sample's shape: ``x``'s (checked against the model's, and building an
    unbuilt Sequential), else the model's own, which must be fixed."""
    try:  # an unbuilt Sequential has no inputs
        declared = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else None
    except (AttributeError, ValueError):
        declared = None
    if x is not None:
        arr_shape = tuple(int(d) for d in getattr(x, "shape", np.shape(x)))
        if not 2 <= len(arr_shape) <= 4:
            raise ValueError(f"trace: example_input must be (batch, features), (batch, L, C) "
                             f"or (batch, H, W, C), got shape {arr_shape}")
        shape = arr_shape[1:]
        if declared is not None and (len(declared) != len(shape) or any(
                d is not None and d != s for d, s in zip(declared, shape))):
            raise ValueError(f"trace: example_input of shape {arr_shape} does not fit the "
                             f"model's input shape {(None, *declared)}")
        if not model.built and isinstance(model, _keras().Sequential):
            model.build((None, *shape))
        return shape
    if declared is None or any(d is None for d in declared):
        raise ValueError("trace: the model's input shape is not fixed "
                         f"({'unbuilt' if declared is None else (None, *declared)}): pass "
                         "example_input")
    return tuple(int(d) for d in declared)


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow's "same" padding of one dim (Keras's on every backend)."""
    total = max((math.ceil(n / s) - 1) * s + k - n, 0)
    return total // 2, total - total // 2


# ---------------------------------------------------------------------- kernel laws
def _digest(w: np.ndarray) -> str:
    """The values' fingerprint (in float64, whatever dtype they are read in)."""
    return hashlib.sha1(np.ascontiguousarray(w, np.float64).tobytes()).hexdigest()


def _fits_loosely(init: Initializer, w: np.ndarray) -> bool:
    """Whether ``w`` could be a draw of ``init`` (Keras's fans): its mean and variance
    within the bands of :mod:`varprop.torch._law` at miss rate ``ALPHA`` (the normal
    family's band, wider than the uniform's, so any of Keras's families passes)."""
    try:
        m = init.moments(tuple(w.shape))
    except (TypeError, ValueError):
        return True  # a shape the scheme cannot describe: nothing to contradict
    s = _law._summary(w)
    if not m.var > 0:
        return bool(s["var"] == 0.0 and np.isclose(s["mean"], m.mean, rtol=1e-6, atol=0.0))
    if abs(s["mean"] - m.mean) > _law._z(_law.ALPHA) * np.sqrt(m.var / s["n"]):
        return False
    lo, hi = _law.variance_band(m.var, s["n"], 3.0)
    second = s["m2"] if m.mean == 0 else s["var"]
    return lo <= second <= hi


def configured_law(name: str, param: str, layer: Any, attr: str, w: np.ndarray,
                   config_key: str) -> "_law.Law | None":
    """The law of a kernel or bias from what drew it: :func:`init_`'s scheme while the
    values are the ones it drew (source ``"init_"``), else the layer's configured
    initializer (source ``"initializer"``, at Keras's fans), with a note when the
    values do not fit it (re-initialized or trained). None: no varprop counterpart."""
    base = {"layer": name, "param": param, "n": int(w.size), "mean": float(w.mean()),
            "var": float(w.var())}
    drawn = _DRAWN.get(layer, {}).get(attr)
    if drawn is not None and drawn[1] == _digest(w):
        return _law.Law(initializer=drawn[0], source="init_", label=_label(drawn[0]), **base)
    init, _ = from_keras(layer.get_config().get(config_key))
    if init is None:
        return None
    law = _law.Law(initializer=init, source="initializer", label=_label(init), **base)
    if not _fits_loosely(init, w):
        law.notes.append(f"its values do not fit its {config_key} ({law.label}; re-assigned "
                         "or trained?): trace(..., law='weights') reads them instead")
    return law


# PyTorch's names of the schemes Keras calls otherwise (the same law)
_KERAS_NAMES = {"xavier_uniform": "glorot_uniform", "kaiming_uniform": "he_uniform"}


def _weights_law(name: str, param: str, w: np.ndarray, groups: int, fan_in: int
                 ) -> "_law.Law":
    """The law read off the values (:func:`varprop.torch._law.read_weight` on the
    kernel transposed to PyTorch's layout, whose fans ignore groups as Keras's do)."""
    if param == "bias":
        return _law.read_bias(name, w, fan_in)
    torch_w = w.T if w.ndim == 2 else np.moveaxis(w, (-1, -2), (0, 1))
    law = _law.read_weight(name, torch_w, groups)
    law.param = param
    law.notes = [n for n in law.notes if "pytorch issue" not in n]
    if groups != 1 and law.source == "matched":
        law.notes.append(f"fans as Keras computes them (groups={groups} ignored)")
    if law.label in _KERAS_NAMES:
        law.label = _KERAS_NAMES[law.label]
        law.initializer = get_initializer(law.label)
    else:
        law.initializer = _law.for_layer(law.initializer, "dense")  # Keras's layout
    return law


def kernel_law(name: str, layer: Any, w: np.ndarray, law: str, scheme: Any,
               groups: int = 1) -> "_law.Law":
    """The law :func:`varprop.keras.trace` gives a Dense/Conv kernel: ``scheme`` at the
    layer's true fans (source ``"scheme"``), else per ``law`` ("init":
    :func:`configured_law`, falling back to the values; "weights": the values)."""
    if scheme is not None:
        init = at_fans(get_initializer(scheme), groups=groups)
        return _law.Law(layer=name, param="kernel", initializer=init, source="scheme",
                        label=_label(init))
    if law == "init":
        found = configured_law(name, "kernel", layer, "kernel", w, "kernel_initializer")
        if found is not None:
            return found
    out = _weights_law(name, "kernel", w, groups, 0)
    if law == "init":
        why = from_keras(layer.get_config().get("kernel_initializer"))[1]
        out.notes.append(f"its kernel_initializer has no varprop counterpart ({why}): law "
                         "read from its values")
    return out


def bias_law(name: str, layer: Any, b: np.ndarray, law: str, scheme: Any,
             bias_scheme: Any, fan_in: int) -> "_law.Law":
    """The bias's law: ``bias_scheme`` if given; zeros under a kernel ``scheme`` (what
    :func:`init_` applies); else per ``law`` as :func:`kernel_law`."""
    if bias_scheme is not None or scheme is not None:
        init = _bias_initializer("zeros" if bias_scheme is None else bias_scheme, fan_in)
        return _law.Law(layer=name, param="bias", initializer=init, source="scheme",
                        label=_label(init))
    if law == "init":
        found = configured_law(name, "bias", layer, "bias", b, "bias_initializer")
        if found is not None:
            return found
    return _weights_law(name, "bias", b, 1, fan_in)


def _bias_initializer(scheme: Any, fan_in: int) -> Initializer:
    if isinstance(scheme, str) and resolve_name(scheme) == "torch_default_bias":
        return get_initializer(scheme, fan_in=fan_in)  # that layer's fan-in
    return get_initializer(scheme)


def init_(model: Any, scheme: Any, *, seed: Any = None, bias_scheme: Any = None,
          **params: Any) -> Any:
    """Draw every kernel of a built Keras model from a varprop initializer, in place.

    Args:
        model: a built ``keras.Model`` (or a single built layer); nested models are
            entered. Each Dense, Conv1D/2D/3D, transposed, depthwise and separable
            convolution kernel is drawn.
        scheme: an initializer name (any of :func:`varprop.available_initializers`,
            Keras class names such as ``"HeNormal"`` too), config dict (a Keras
            config too) or :class:`~varprop.initializers.Initializer`; drawn in
            Keras's kernel layout at each layer's true fans (module doc).
        seed: None, an int, a SeedSequence or a numpy Generator: one generator draws
            the layers in order (kernel, then bias), so an int gives the same model
            every time. Keras's own seed state is not touched.
        bias_scheme: None sets biases to zero; else a scheme for every bias
            (``"torch_default_bias"`` takes each layer's fan-in).
        **params: the scheme's parameters (``scale=2.0``, ``a=0.1``).

    Returns:
        ``model``. :func:`varprop.keras.trace` then reads each kernel's law as this
        scheme (source ``"init_"``) until its values change.

    Raises:
        TypeError: ``model`` not a Keras layer or model; ``params`` the scheme does not
            take.
        ValueError: an unknown scheme; an unbuilt model or one without kernels.

    Example:
        >>> import os; os.environ.setdefault("KERAS_BACKEND", "torch")
        'torch'
        >>> import keras, varprop.keras.init
        >>> model = keras.Sequential([keras.Input((512,)), keras.layers.Dense(256)])
        >>> model = varprop.keras.init_(model, "he_normal", seed=0)
        >>> w = varprop.keras.init.to_numpy(model.layers[0].kernel)
        >>> round(float(w.var()) * 512, 1)                    # Var[W] = 2 / fan_in
        2.0
    """
    keras = _keras()
    if not isinstance(model, keras.layers.Layer):
        raise TypeError(f"init_: model must be a Keras model or layer, got {type(model).__name__}")
    init = get_initializer(scheme, **params)
    layers = [(model.name, model)] if kernels_of(model) else weighted_layers(model)
    if not layers:
        raise ValueError("init_: model has no built Dense or Conv layer to initialize "
                         "(build it first: model.build(input_shape) or call it once)")
    rng = as_generator(seed)
    for name, layer in layers:
        drawn = _DRAWN.setdefault(layer, {})
        fan_in = 1
        for attr, var, options in kernels_of(layer):
            layer_init = at_fans(init, **options)
            shape = tuple(var.shape)
            try:
                w = layer_init(shape, seed=rng, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"init_: scheme {scheme!r} cannot draw {name!r}'s {attr} of "
                                f"shape {shape}: {exc}") from None
            w = _assign(var, w)
            drawn[attr] = (layer_init, _digest(w))
            fan_in = compute_fans(shape, layout="keras", **options)[0]  # the true one
        bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
        if bias is None:
            continue
        b_init = _bias_initializer("zeros" if bias_scheme is None else bias_scheme, fan_in)
        try:
            b = b_init(tuple(bias.shape), seed=rng, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"init_: bias_scheme {bias_scheme!r} cannot draw {name!r}'s "
                            f"bias of shape {tuple(bias.shape)}: {exc}") from None
        drawn["bias"] = (b_init, _digest(_assign(bias, b)))
    return model


def _assign(var: Any, value: np.ndarray) -> np.ndarray:
    """Write ``value`` into the Keras variable in its dtype; returns what it holds."""
    try:
        dtype = np.dtype(_keras().backend.standardize_dtype(var.dtype))
    except TypeError:  # a dtype numpy does not name (bfloat16): Keras casts float32
        dtype = np.dtype(np.float32)
    cast = value.astype(dtype)
    var.assign(cast)
    return cast
