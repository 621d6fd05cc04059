"""Capture analyze/measure JSON of ~100 networks (every activation, initializer and layer type)
and compare a later run with a saved one at 1e-12 relative, timings aside:

    python tools/json_regression.py save before.json   # on the old commit
    python tools/json_regression.py check before.json  # on the new one
"""
import json, sys, math
import varprop as vp
from varprop.network import Network, Dense, Act, Residual, BatchNorm, LayerNorm
from varprop.initializers import get as gi

ACTS = list(vp.ACTIVATION_NAMES)
INITS = ["constant", "delta_orthogonal", "dirac", "glorot_normal", "glorot_uniform", "he_normal",
         "he_uniform", "identity", "kaiming_normal", "kaiming_uniform", "lecun_normal", "lecun_uniform",
         "ones", "orthogonal", "random_normal", "random_uniform", "sparse", "torch_default",
         "trunc_normal", "truncated_normal", "variance_scaling", "xavier_normal", "xavier_uniform", "zeros"]

def nets():
    for a in ACTS:
        for init in ["he_normal", "glorot_uniform", "orthogonal", "identity", "ones", "random_normal"]:
            yield f"mlp-{a}-{init}", vp.mlp([32] * 6, a, init=init, bias_init={"name": "random_normal", "stddev": 0.1})
    for init in INITS:
        yield f"init-{init}", vp.mlp([24] * 5, "tanh", init={"name": init, "sparsity": 0.3} if init == "sparse" else init, bias_init={"name": "torch_default_bias", "fan_in": 24} if init == "torch_default" else "zeros")
    he, z = gi("he_normal"), gi("zeros")
    for a in ["relu", "tanh", "gelu", "selu"]:
        A = vp.get_activation(a)
        br = (Dense(32, 32, he, z), Act(A), Dense(32, 32, he, z))
        layers = (Dense(16, 32, he, z), Act(A), Residual(br, 0.5), BatchNorm(), Act(A),
                  Residual((BatchNorm(), Act(A), Dense(32, 32, he, None)), 1.0), LayerNorm(),
                  Dense(32, 32, gi("glorot_normal"), gi("random_normal")), Act(A), BatchNorm(eps=1e-3))
        yield f"mixed-{a}", Network(16, layers, name=f"mixed {a}")
    yield "lrelu", vp.mlp([32] * 5, "leaky_relu", negative_slope=0.2)
    yield "elu", vp.mlp([32] * 5, "elu", alpha=0.5)

def run():
    out = {}
    for key, net in nets():
        r = {}
        for kw in [{}, {"input_mean": 0.5, "input_var": 2.0, "input_correlation": 0.3}, {"batch": 64}]:
            try:
                r[f"analyze{sorted(kw.items())}"] = json.loads(vp.analyze(net, **kw).to_json())
            except Exception as e:
                r[f"analyze{sorted(kw.items())}"] = f"ERR {type(e).__name__}: {e}"
        try:
            r["measure"] = json.loads(vp.measure(net, batch=64, seeds=2).to_json())
        except Exception as e:
            r["measure"] = f"ERR {type(e).__name__}: {e}"
        out[key] = r
    return out

def scrub(o):
    if isinstance(o, dict):
        return {k: scrub(v) for k, v in o.items() if k not in ("timestamp", "created", "elapsed", "elapsed_s", "time", "timings", "version", "duration_s", "wall_s", "time_s")}
    if isinstance(o, list):
        return [scrub(v) for v in o]
    return o

def diff(a, b, path="", out=None, rtol=1e-12):
    if out is None: out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: missing in {'old' if k not in a else 'new'}")
            else:
                diff(a[k], b[k], f"{path}/{k}", out, rtol)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b): out.append(f"{path}: len {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)): diff(x, y, f"{path}[{i}]", out, rtol)
    elif isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if not (a == b or (math.isnan(a) and math.isnan(b)) or abs(a - b) <= rtol * max(abs(a), abs(b))):
                out.append(f"{path}: {a!r} vs {b!r}")
        else:
            out.append(f"{path}: {a!r} vs {b!r}")
    elif a != b:
        out.append(f"{path}: {a!r} vs {b!r}")
    return out

if __name__ == "__main__":
    mode, fn = sys.argv[1], sys.argv[2]
    data = scrub(run())
    if mode == "save":
        json.dump(data, open(fn, "w"))
        print("saved", len(data))
    else:
        old = json.load(open(fn))
        d = diff(old, data)
        print(len(d), "differences"); print("\n".join(d[:60]))
