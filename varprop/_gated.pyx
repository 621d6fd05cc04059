# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The gated cells' loops (csrc/vp_gated.c): LSTM and GRU forward and backward through
time, the whole time loop in C, each recurrent step's GEMM followed by the gate
nonlinearities and the cell update on the same batch tile, each OpenMP thread calling
scipy's BLAS on its tile.

Private: varprop.gated_kernels validates the user's arguments, picks the tile grids (from
the shapes alone) and allocates. Every entry point still checks, in O(1) on the buffer
descriptors, what keeps the C loops in bounds: dtypes (float32 or float64, all alike;
the bias partial sums float64), C-contiguous buffers of the documented ranks and shapes
consistent with x and w_h, T, B, F, H >= 1 with T B and G H within a BLAS int, the cell
id, tile sizes in [1, 2**31 - 1], n_threads >= 1, writeable outputs that share no memory
with any other argument. An optional buffer is passed empty (first dimension 0). A
violation is a TypeError or ValueError naming the argument. Results never depend on
n_threads (see csrc/vp_gated.h).
"""

from libc.limits cimport INT_MAX
from libc.stddef cimport ptrdiff_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

import operator

import numpy as np

cdef extern from "vp_gated.h" nogil:
    ctypedef void (*vp_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                 int *, float *, int *, float *, float *, int *) noexcept nogil
    ctypedef void (*vp_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                 int *, double *, int *, double *, double *, int *) noexcept nogil
    ctypedef struct vp_tile:
        ptrdiff_t rows, cols
    ctypedef struct vp_gated_dims:
        int cell
        ptrdiff_t steps, batch, n_in, hidden, gates, batch_tile
        vp_tile proj, grad_x, grad_w_x, grad_w_h
        ptrdiff_t bias_block
    void vp_gated_forward_f32(vp_sgemm_fn gemm, const vp_gated_dims *d, const float *x,
                              const float *w_x, const float *w_h, const float *b_x,
                              const float *b_h, const float *h0, const float *c0,
                              float *pre, float *gates, float *h, float *c, float *s,
                              int n_threads)
    void vp_gated_forward_f64(vp_dgemm_fn gemm, const vp_gated_dims *d, const double *x,
                              const double *w_x, const double *w_h, const double *b_x,
                              const double *b_h, const double *h0, const double *c0,
                              double *pre, double *gates, double *h, double *c, double *s,
                              int n_threads)
    void vp_gated_backward_f32(vp_sgemm_fn gemm, const vp_gated_dims *d, const float *x,
                               const float *w_x, const float *w_h, const float *h0,
                               const float *c0, const float *gates, const float *h,
                               const float *c, const float *s, const float *grad_out,
                               float *grad_h, float *grad_c, float *grad_a, float *grad_rec,
                               float *grad_h0, float *grad_c0, float *grad_x,
                               float *grad_w_x, float *grad_w_h, double *partials_x,
                               double *partials_h, int n_threads)
    void vp_gated_backward_f64(vp_dgemm_fn gemm, const vp_gated_dims *d, const double *x,
                               const double *w_x, const double *w_h, const double *h0,
                               const double *c0, const double *gates, const double *h,
                               const double *c, const double *s, const double *grad_out,
                               double *grad_h, double *grad_c, double *grad_a,
                               double *grad_rec, double *grad_h0, double *grad_c0,
                               double *grad_x, double *grad_w_x, double *grad_w_h,
                               double *partials_x, double *partials_h, int n_threads)
    int vp_gated_built_with_openmp()

ctypedef fused floating:
    float
    double

#: Cell ids (csrc/vp_gated.h, enum vp_gated_cell) and their gate counts.
LSTM, GRU = 0, 1
_GATES = {LSTM: 4, GRU: 3}


def built_with_openmp():
    """True when the gated loops were built with OpenMP."""
    return bool(vp_gated_built_with_openmp())


# ---------------------------------------------------------------------- argument checks
cdef long long _int(object value, str name, long long lo, long long hi) except? -1:
    """An int (or numpy integer) in [lo, hi]; bools and floats refused."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = operator.index(value)
    if value < lo or value > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


cdef int _shape(str name, tuple got, tuple want) except -1:
    if got != want:
        raise ValueError(f"{name} must have shape {want}, got {got}")
    return 0


cdef bint _given(str name, tuple got, tuple want, bint allowed) except -1:
    """An optional buffer: empty (first dimension 0) for none, else exactly ``want``;
    ``allowed`` False: it must be empty (the other cell's buffer)."""
    if got[0] == 0:
        return False
    if not allowed:
        raise ValueError(f"{name} must be empty (first dimension 0) for this cell, got "
                         f"shape {got}")
    _shape(name, got, want)
    return True


cdef int _disjoint(tuple names, list arrays, int first_out) except -1:
    """Outputs (index >= first_out) may share no memory with any other argument: the C
    loops read their inputs while they write the outputs."""
    cdef int i, j
    for i in range(first_out, len(arrays)):
        for j in range(len(arrays)):
            if i != j and arrays[i].size and arrays[j].size \
                    and np.may_share_memory(arrays[i], arrays[j]):
                raise ValueError(f"{names[i]} overlaps {names[j]} in memory: each output "
                                 "must be a separate array")
    return 0


cdef int _dims(vp_gated_dims *d, object cell, Py_ssize_t steps, Py_ssize_t batch,
               Py_ssize_t n_in, Py_ssize_t hidden, object n_threads) except -1:
    """The cell id, T, B, F, H >= 1, with T B, F and G H BLAS ints (into d), and
    n_threads checked."""
    d.cell = <int>_int(cell, "cell (0: LSTM, 1: GRU)", LSTM, GRU)
    d.gates = _GATES[d.cell]
    if steps < 1 or batch < 1 or n_in < 1 or hidden < 1:
        raise ValueError(f"T, B, F and H must be >= 1, got {(steps, batch, n_in, hidden)}")
    if steps * batch > INT_MAX or n_in > INT_MAX or d.gates * hidden > INT_MAX:
        raise ValueError(f"T B = {steps * batch}, F = {n_in} and G H = {d.gates * hidden} "
                         "must be at most 2**31 - 1")
    _int(n_threads, "n_threads", 1, 1 << 20)
    d.steps, d.batch, d.n_in, d.hidden = steps, batch, n_in, hidden
    return 0


cdef int _tile(vp_tile *tile, object rows, object cols, str name) except -1:
    tile.rows = _int(rows, name + " rows", 1, INT_MAX)
    tile.cols = _int(cols, name + " cols", 1, INT_MAX)
    return 0


cdef ptrdiff_t _ceil(ptrdiff_t a, ptrdiff_t b) noexcept:
    return (a + b - 1) // b


cdef tuple _s3(const floating[:, :, ::1] a):
    return (a.shape[0], a.shape[1], a.shape[2])


cdef tuple _s2(const floating[:, ::1] a):
    return (a.shape[0], a.shape[1])


# ------------------------------------------------------------------------- forward
_FORWARD_NAMES = ("x", "w_x", "w_h", "b_x", "b_h", "h0", "c0", "pre", "gates", "h", "c",
                  "s")


def forward(cell, const floating[:, :, ::1] x, const floating[:, ::1] w_x,
            const floating[:, ::1] w_h, const floating[::1] b_x, const floating[::1] b_h,
            const floating[:, ::1] h0, const floating[:, ::1] c0, floating[:, :, ::1] pre,
            floating[:, :, ::1] gates, floating[:, :, ::1] h, floating[:, :, ::1] c,
            floating[:, :, ::1] s, tiles, n_threads):
    """The cell (0: LSTM, 1: GRU) over x (T, B, F) from h0 (and c0): csrc/vp_gated.h.

    w_x (F, G H), w_h (H, G H), b_x and b_h (G H,) or (0,) for none, h0 and c0 (B, H) or
    (0, H) for zeros (c0 empty for a GRU): inputs. pre and gates (T, B, G H), h (T, B, H),
    c (T, B, H) for an LSTM, s (T, B, H) for a GRU, the other one (0, B, H): outputs.
    tiles = (batch_tile, proj_rows, proj_cols)."""
    cdef vp_gated_dims d
    cdef int threads
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], Fi = x.shape[2], H = w_h.shape[0]
    _dims(&d, cell, T, B, Fi, H, n_threads)
    cdef Py_ssize_t GH = d.gates * H
    cdef bint lstm = d.cell == LSTM
    _shape("w_x", _s2(w_x), (Fi, GH))
    _shape("w_h", _s2(w_h), (H, GH))
    cdef bint has_bx = _given("b_x", (b_x.shape[0],), (GH,), True)
    cdef bint has_bh = _given("b_h", (b_h.shape[0],), (GH,), True)
    cdef bint has_h0 = _given("h0", _s2(h0), (B, H), True)
    cdef bint has_c0 = _given("c0", _s2(c0), (B, H), lstm)
    _shape("pre", _s3(pre), (T, B, GH))
    _shape("gates", _s3(gates), (T, B, GH))
    _shape("h", _s3(h), (T, B, H))
    _shape("c", _s3(c), (T if lstm else 0, B, H))
    _shape("s", _s3(s), (0 if lstm else T, B, H))
    batch_tile, proj_rows, proj_cols = tiles
    d.batch_tile = _int(batch_tile, "batch_tile", 1, INT_MAX)
    _tile(&d.proj, proj_rows, proj_cols, "proj")
    _disjoint(_FORWARD_NAMES, [
        np.asarray(x), np.asarray(w_x), np.asarray(w_h), np.asarray(b_x), np.asarray(b_h),
        np.asarray(h0), np.asarray(c0), np.asarray(pre), np.asarray(gates), np.asarray(h),
        np.asarray(c), np.asarray(s)], 7)
    # more threads than the larger phase has tasks would only wait
    threads = <int>min(<ptrdiff_t>n_threads, max(_ceil(B, d.batch_tile),
                                                 _ceil(T * B, d.proj.rows)
                                                 * _ceil(GH, d.proj.cols)))
    cdef const floating *bxp = &b_x[0] if has_bx else NULL
    cdef const floating *bhp = &b_h[0] if has_bh else NULL
    cdef const floating *h0p = &h0[0, 0] if has_h0 else NULL
    cdef const floating *c0p = &c0[0, 0] if has_c0 else NULL
    cdef floating *cp = &c[0, 0, 0] if lstm else NULL
    cdef floating *sp = NULL if lstm else &s[0, 0, 0]
    with nogil:
        if floating is float:
            vp_gated_forward_f32(<vp_sgemm_fn>sgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                                 bxp, bhp, h0p, c0p, &pre[0, 0, 0], &gates[0, 0, 0],
                                 &h[0, 0, 0], cp, sp, threads)
        else:
            vp_gated_forward_f64(<vp_dgemm_fn>dgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                                 bxp, bhp, h0p, c0p, &pre[0, 0, 0], &gates[0, 0, 0],
                                 &h[0, 0, 0], cp, sp, threads)


# ------------------------------------------------------------------------ backward
_BACKWARD_NAMES = ("x", "w_x", "w_h", "h0", "c0", "gates", "h", "c", "s", "grad_out",
                   "grad_h", "grad_c", "grad_a", "grad_rec", "grad_h0", "grad_c0", "grad_x",
                   "grad_w_x", "grad_w_h", "partials_x", "partials_h")


def backward(cell, const floating[:, :, ::1] x, const floating[:, ::1] w_x,
             const floating[:, ::1] w_h, const floating[:, ::1] h0,
             const floating[:, ::1] c0, const floating[:, :, ::1] gates,
             const floating[:, :, ::1] h, const floating[:, :, ::1] c,
             const floating[:, :, ::1] s, const floating[:, :, ::1] grad_out,
             floating[:, :, ::1] grad_h, floating[:, :, ::1] grad_c,
             floating[:, :, ::1] grad_a, floating[:, :, ::1] grad_rec,
             floating[:, ::1] grad_h0, floating[:, ::1] grad_c0, floating[:, :, ::1] grad_x,
             floating[:, ::1] grad_w_x, floating[:, ::1] grad_w_h,
             double[:, ::1] partials_x, double[:, ::1] partials_h, tiles, n_threads):
    """Backward through time of :func:`forward` (csrc/vp_gated.h) given grad_out = the
    loss's direct gradient on each h_t (T, B, H).

    Inputs as forward's, with its outputs gates, h, c (LSTM) and s (GRU). Outputs:
    grad_h (T, B, H) the total dL/dh_t; grad_c (T, B, H) the LSTM's total dL/dc_t (empty
    for a GRU); grad_a (T, B, G H) dL/d(pre); grad_rec (T, B, G H) the GRU's recurrent-
    side gradient (empty for an LSTM, whose is grad_a); grad_h0 (B, H); grad_c0 (B, H)
    (empty for a GRU). grad_x (T, B, F), grad_w_x (F, G H), grad_w_h (H, G H) and the
    float64 column sums partials_x (of dA) and, GRU, partials_h (of dR), (ceil(T B /
    bias_block), G H) each: all empty to skip the whole-sequence phase. tiles =
    (batch_tile, grad_x_rows, grad_x_cols, grad_w_x_rows, grad_w_x_cols, grad_w_h_rows,
    grad_w_h_cols, bias_block)."""
    cdef vp_gated_dims d
    cdef int threads
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], Fi = x.shape[2], H = w_h.shape[0]
    _dims(&d, cell, T, B, Fi, H, n_threads)
    cdef Py_ssize_t GH = d.gates * H
    cdef bint lstm = d.cell == LSTM
    _shape("w_x", _s2(w_x), (Fi, GH))
    _shape("w_h", _s2(w_h), (H, GH))
    cdef bint has_h0 = _given("h0", _s2(h0), (B, H), True)
    cdef bint has_c0 = _given("c0", _s2(c0), (B, H), lstm)
    _shape("gates", _s3(gates), (T, B, GH))
    _shape("h", _s3(h), (T, B, H))
    _shape("c", _s3(c), (T if lstm else 0, B, H))
    _shape("s", _s3(s), (0 if lstm else T, B, H))
    _shape("grad_out", _s3(grad_out), (T, B, H))
    _shape("grad_h", _s3(grad_h), (T, B, H))
    _shape("grad_c", _s3(grad_c), (T if lstm else 0, B, H))
    _shape("grad_a", _s3(grad_a), (T, B, GH))
    _shape("grad_rec", _s3(grad_rec), (0 if lstm else T, B, GH))
    _shape("grad_h0", _s2(grad_h0), (B, H))
    _shape("grad_c0", _s2(grad_c0), (B if lstm else 0, H))
    batch_tile, xr, xc, wxr, wxc, whr, whc, block = tiles
    d.batch_tile = _int(batch_tile, "batch_tile", 1, INT_MAX)
    _tile(&d.grad_x, xr, xc, "grad_x")
    _tile(&d.grad_w_x, wxr, wxc, "grad_w_x")
    _tile(&d.grad_w_h, whr, whc, "grad_w_h")
    d.bias_block = _int(block, "bias_block", 1, INT_MAX)
    cdef Py_ssize_t n_blocks = _ceil(T * B, d.bias_block)
    cdef bint sequence = grad_x.shape[0] != 0
    if sequence:
        _shape("grad_x", _s3(grad_x), (T, B, Fi))
        _shape("grad_w_x", _s2(grad_w_x), (Fi, GH))
        _shape("grad_w_h", _s2(grad_w_h), (H, GH))
        _shape("partials_x", (partials_x.shape[0], partials_x.shape[1]), (n_blocks, GH))
        _shape("partials_h", (partials_h.shape[0], partials_h.shape[1]),
               (0 if lstm else n_blocks, GH))
    else:
        for name, rows in (("grad_w_x", grad_w_x.shape[0]), ("grad_w_h", grad_w_h.shape[0]),
                           ("partials_x", partials_x.shape[0]),
                           ("partials_h", partials_h.shape[0])):
            if rows != 0:
                raise ValueError(f"{name} must be empty (first dimension 0) when grad_x "
                                 "is: the whole-sequence phase is skipped")
    _disjoint(_BACKWARD_NAMES, [
        np.asarray(x), np.asarray(w_x), np.asarray(w_h), np.asarray(h0), np.asarray(c0),
        np.asarray(gates), np.asarray(h), np.asarray(c), np.asarray(s),
        np.asarray(grad_out), np.asarray(grad_h), np.asarray(grad_c), np.asarray(grad_a),
        np.asarray(grad_rec), np.asarray(grad_h0), np.asarray(grad_c0), np.asarray(grad_x),
        np.asarray(grad_w_x), np.asarray(grad_w_h), np.asarray(partials_x),
        np.asarray(partials_h)], 10)
    cdef ptrdiff_t tasks = 0
    if sequence:
        tasks = (_ceil(T * B, d.grad_x.rows) * _ceil(Fi, d.grad_x.cols)
                 + _ceil(Fi, d.grad_w_x.rows) * _ceil(GH, d.grad_w_x.cols)
                 + _ceil(H, d.grad_w_h.rows) * _ceil(GH, d.grad_w_h.cols)
                 + n_blocks * (1 if lstm else 2))
    # more threads than the larger phase has tasks would only wait
    threads = <int>min(<ptrdiff_t>n_threads, max(_ceil(B, d.batch_tile), tasks))
    cdef const floating *h0p = &h0[0, 0] if has_h0 else NULL
    cdef const floating *c0p = &c0[0, 0] if has_c0 else NULL
    cdef const floating *cp = &c[0, 0, 0] if lstm else NULL
    cdef const floating *sp = NULL
    if not lstm:
        sp = &s[0, 0, 0]
    cdef floating *gcp = &grad_c[0, 0, 0] if lstm else NULL
    cdef floating *garp = &grad_a[0, 0, 0] if lstm else &grad_rec[0, 0, 0]
    cdef floating *gc0p = &grad_c0[0, 0] if lstm else NULL
    cdef floating *gxp = &grad_x[0, 0, 0] if sequence else NULL
    cdef floating *gwxp = &grad_w_x[0, 0] if sequence else NULL
    cdef floating *gwhp = &grad_w_h[0, 0] if sequence else NULL
    cdef double *pxp = &partials_x[0, 0] if sequence else NULL
    cdef double *php = &partials_h[0, 0] if sequence and not lstm else NULL
    with nogil:
        if floating is float:
            vp_gated_backward_f32(<vp_sgemm_fn>sgemm, &d, &x[0, 0, 0], &w_x[0, 0],
                                  &w_h[0, 0], h0p, c0p, &gates[0, 0, 0], &h[0, 0, 0], cp,
                                  sp, &grad_out[0, 0, 0], &grad_h[0, 0, 0], gcp,
                                  &grad_a[0, 0, 0], garp, &grad_h0[0, 0], gc0p, gxp, gwxp,
                                  gwhp, pxp, php, threads)
        else:
            vp_gated_backward_f64(<vp_dgemm_fn>dgemm, &d, &x[0, 0, 0], &w_x[0, 0],
                                  &w_h[0, 0], h0p, c0p, &gates[0, 0, 0], &h[0, 0, 0], cp,
                                  sp, &grad_out[0, 0, 0], &grad_h[0, 0, 0], gcp,
                                  &grad_a[0, 0, 0], garp, &grad_h0[0, 0], gc0p, gxp, gwxp,
                                  gwhp, pxp, php, threads)
