"""The float64 reference of the gated-cell kernels' tests (test_gated_kernels.py,
test_gated_kernels_torch.py): a plain loop over the steps written from the equations of
docs/gated.md (canonical layout, gates i, f, g, o / z, r, n, initial states allowed),
independent of both the kernels and varprop.recurrent.gated_arrays, that carries with
every value a bound on its rounding error.

Tolerances are derived, never tuned, by a first-order running error analysis (Wilkinson;
Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., sections 3.1 and 3.3):
every quantity q of the computation is carried as its float64 value and an error
coefficient E(q) with |computed q - exact q| <= u E(q) to first order in the unit
roundoff u of the dtype. Inputs are exact (E = 0: both sides get the same floats).
Errors propagate to first order (a product: each factor's E times the others'
magnitudes); a sum of n terms (a dot product: n products), in any order, adds
n sum |terms|; a product of n factors adds (n - 1) |product|; ``a - b`` adds |a - b|; a gate
phi(a) (sigmoid, tanh, values in [-1, 1]) has E = L E(a) + 2 ulps, L = max |phi'| (1/4,
1), its own error being at most ulps eps = 2 ulps u. Two implementations of the same
equations (kernel and twin, kernel and torch) then differ by at most 2 u E(q).
"""

from __future__ import annotations

import numpy as np

#: Gates per cell.
G = {"lstm": 4, "gru": 3}


def unit_roundoff(dtype) -> float:
    """u of ``dtype``: half its machine epsilon."""
    return float(np.finfo(dtype).eps) / 2


class Q:
    """A value with its error coefficient E (module doc)."""

    __slots__ = ("v", "e")

    def __init__(self, v, e):
        self.v, self.e = v, e

    def __getitem__(self, key):
        return Q(self.v[key], self.e[key])

    @property
    def T(self):
        return Q(self.v.T, self.e.T)


def exact(a):
    a = np.asarray(a, np.float64)
    return Q(a, np.zeros_like(a))


def total(*terms, dots=()):
    """The sum of ``terms`` and of the matrix products ``dots`` (pairs), in any order:
    the propagated errors plus n roundings of at most u times the sum of |terms|."""
    v = sum(t.v for t in terms) + sum(a.v @ b.v for a, b in dots)
    size = sum(np.abs(t.v) for t in terms) + sum(np.abs(a.v) @ np.abs(b.v) for a, b in dots)
    n = len(terms) + sum(a.v.shape[-1] for a, _ in dots)
    e = sum(t.e for t in terms) + sum(a.e @ np.abs(b.v) + np.abs(a.v) @ b.e for a, b in dots)
    return Q(v, e + n * size)


def prod(*factors):
    """A product of n factors: each factor's error times the others, n - 1 roundings."""
    v = factors[0].v
    for f in factors[1:]:
        v = v * f.v
    e = 0
    for i, f in enumerate(factors):
        others = 1
        for j, g in enumerate(factors):
            if j != i:
                others = others * np.abs(g.v)
        e = e + f.e * others
    return Q(v, e + (len(factors) - 1) * np.abs(v))


def minus(a, b):
    v = a.v - b.v
    return Q(v, a.e + b.e + np.abs(v))


def one_minus(q):
    return Q(1 - q.v, q.e + np.abs(1 - q.v))


def gate(q, fn, slope, ulps):
    return Q(fn(q.v), slope * q.e + 2 * ulps)


def cat(qs, axis=-1):
    return Q(*(np.concatenate([getattr(q, k) for q in qs], axis) for k in ("v", "e")))


def stack(qs):
    return Q(*(np.stack([getattr(q, k) for q in qs]) for k in ("v", "e")))


def _sig(a):
    return 0.5 * (1.0 + np.tanh(0.5 * a))


def reference(kind, x, w_x, w_h, b_x, b_h, h0, c0, grad_out, ulps=2):
    """Every forward and backward quantity as a :class:`Q` (value, M, E; module doc),
    canonical layout, initial states allowed: a plain float64 loop written from the
    equations of docs/gated.md, independent of both the kernels and gated_arrays."""
    x, w_x, w_h = exact(x), exact(w_x), exact(w_h)
    steps, batch, _ = x.v.shape
    H = w_h.v.shape[0]
    gh = G[kind] * H
    bx, bh = (exact(np.zeros(gh) if b is None else b) for b in (b_x, b_h))
    h_init = exact(np.zeros((batch, H)) if h0 is None else h0)
    c_init = exact(np.zeros((batch, H)) if c0 is None else c0)
    sig = lambda q: gate(q, _sig, 0.25, ulps)  # noqa: E731
    tanh = lambda q: gate(q, np.tanh, 1.0, ulps)  # noqa: E731
    hs, cs, gs, ss, cands = [], [], [], [], []
    h_prev, c_prev = h_init, c_init
    for t in range(steps):
        if kind == "lstm":
            a = total(bx, bh, dots=[(x[t], w_x), (h_prev, w_h)])
            g = cat([sig(a[:, :2 * H]), tanh(a[:, 2 * H:3 * H]), sig(a[:, 3 * H:])])
            i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
            c_prev = total(prod(f, c_prev), prod(i, gg))
            h_prev = prod(o, tanh(c_prev))
            cs.append(c_prev)
        else:
            a = total(bx[:2 * H], bh[:2 * H], dots=[(x[t], w_x[:, :2 * H]),
                                                     (h_prev, w_h[:, :2 * H])])
            zr = sig(a)
            s = total(bh[2 * H:], dots=[(h_prev, w_h[:, 2 * H:])])
            cand = total(total(bx[2 * H:], dots=[(x[t], w_x[:, 2 * H:])]),
                         prod(zr[:, H:], s))
            n = tanh(cand)
            z = zr[:, :H]
            h_prev = total(prod(z, h_prev), prod(one_minus(z), n))
            g = cat([zr, n])
            ss.append(s)
            cands.append(cand)
        gs.append(g)
        hs.append(h_prev)
    out = {"h": stack(hs), "gates": stack(gs)}
    if kind == "lstm":
        out["c"] = stack(cs)
    else:
        out["s"], out["cand"] = stack(ss), stack(cands)
    # backward through time
    go = [exact(grad_out[t]) for t in range(steps)]
    d_a, d_r, dhs, dcs = [None] * steps, [None] * steps, [None] * steps, [None] * steps
    for t in range(steps - 1, -1, -1):
        g = gs[t]
        hp = hs[t - 1] if t else h_init
        if kind == "lstm":
            dh = total(go[t], dots=[(d_r[t + 1], w_h.T)]) if t + 1 < steps else go[t]
            i, f, gg, o = (g[:, k * H:(k + 1) * H] for k in range(4))
            tc = tanh(cs[t])
            cp = cs[t - 1] if t else c_init
            dc = prod(dh, o, one_minus(prod(tc, tc)))
            if t + 1 < steps:
                dc = total(dc, prod(dcs[t + 1], gs[t + 1][:, H:2 * H]))
            d_a[t] = cat([prod(dc, gg, i, one_minus(i)), prod(dc, cp, f, one_minus(f)),
                          prod(dc, i, one_minus(prod(gg, gg))),
                          prod(dh, tc, o, one_minus(o))])
            d_r[t], dcs[t] = d_a[t], dc
        else:
            if t + 1 < steps:
                dh = total(go[t], prod(dhs[t + 1], gs[t + 1][:, :H]),
                           dots=[(d_r[t + 1], w_h.T)])
            else:
                dh = go[t]
            z, r, n = (g[:, k * H:(k + 1) * H] for k in range(3))
            dn = prod(dh, one_minus(z), one_minus(prod(n, n)))
            daz = prod(dh, minus(hp, n), z, one_minus(z))
            dar = prod(dn, ss[t], r, one_minus(r))
            d_a[t] = cat([daz, dar, dn])
            d_r[t] = cat([daz, dar, prod(dn, r)])
        dhs[t] = dh
    if kind == "lstm":
        out["grad_h0"] = total(dots=[(d_r[0], w_h.T)])
        out["grad_c"], out["grad_c0"] = stack(dcs), prod(dcs[0], gs[0][:, H:2 * H])
    else:
        out["grad_h0"] = total(prod(dhs[0], gs[0][:, :H]), dots=[(d_r[0], w_h.T)])
    out["grad_h"] = stack(dhs)
    da, dr = stack(d_a), stack(d_r)
    flat = lambda q: Q(q.v.reshape(steps * batch, -1), q.e.reshape(steps * batch, -1))  # noqa: E731
    hprev = stack([h_init] + hs[:-1])
    out["grad_a"] = da
    gx = total(dots=[(flat(da), w_x.T)])
    out["grad_x"] = Q(gx.v.reshape(steps, batch, -1), gx.e.reshape(steps, batch, -1))
    out["grad_w_x"] = total(dots=[(flat(x).T, flat(da))])
    out["grad_w_h"] = total(dots=[(flat(hprev).T, flat(dr))])
    ones = exact(np.ones((1, steps * batch)))
    out["grad_b_x"] = total(dots=[(ones, flat(da))])[0]
    out["grad_b_h"] = total(dots=[(ones, flat(dr))])[0]
    return out
