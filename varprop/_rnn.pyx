# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The Elman recurrent layer's loops (csrc/vp_rnn.c): forward and backward through time,
the whole time loop in C, the recurrent step fused with the dense kernels' activation
epilogue (csrc/vp_activations.c), each OpenMP thread calling scipy's BLAS on its tile.

Private: varprop.rnn_kernels validates the user's arguments, picks the tile grids (from
the shapes alone) and allocates. Every entry point still checks, in O(1) on the buffer
descriptors, what keeps the C loops in bounds: dtypes (float32 or float64, all alike;
the bias partial sums float64), C-contiguous buffers of the documented ranks and of
shapes consistent with x and w_h, T, B, F, H >= 1 and T B within a BLAS int, tile sizes
in [1, 2**31 - 1], a known activation id, n_threads >= 1, writeable outputs that share
no memory with any other argument. A violation is a TypeError or ValueError naming the
argument. Results never depend on n_threads (see csrc/vp_rnn.h).
"""

from libc.limits cimport INT_MAX
from libc.stddef cimport ptrdiff_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

import operator

import numpy as np

cdef extern from "vp_activations.h" nogil:
    enum: VP_N_ACTIVATIONS

cdef extern from "vp_rnn.h" nogil:
    ctypedef void (*vp_sgemm_fn)(char *, char *, int *, int *, int *, float *, float *,
                                 int *, float *, int *, float *, float *, int *) noexcept nogil
    ctypedef void (*vp_dgemm_fn)(char *, char *, int *, int *, int *, double *, double *,
                                 int *, double *, int *, double *, double *, int *) noexcept nogil
    ctypedef struct vp_tile:
        ptrdiff_t rows, cols
    ctypedef struct vp_rnn_dims:
        ptrdiff_t steps, batch, n_in, hidden, batch_tile
        vp_tile proj, grad_x, grad_w_x, grad_w_h
        ptrdiff_t bias_block
    void vp_rnn_forward_f32(vp_sgemm_fn gemm, const vp_rnn_dims *d, const float *x,
                            const float *w_x, const float *w_h, const float *b,
                            const float *h0, float *z, float *h, int kind, double p0,
                            double p1, int n_threads)
    void vp_rnn_forward_f64(vp_dgemm_fn gemm, const vp_rnn_dims *d, const double *x,
                            const double *w_x, const double *w_h, const double *b,
                            const double *h0, double *z, double *h, int kind, double p0,
                            double p1, int n_threads)
    void vp_rnn_backward_f32(vp_sgemm_fn gemm, const vp_rnn_dims *d, const float *x,
                             const float *w_x, const float *w_h, const float *z,
                             const float *h, const float *grad_h, const float *h0,
                             float *grad_z, float *grad_x, float *grad_h0, float *grad_w_x,
                             float *grad_w_h, double *bias_partials, int kind, double p0,
                             double p1, int n_threads)
    void vp_rnn_backward_f64(vp_dgemm_fn gemm, const vp_rnn_dims *d, const double *x,
                             const double *w_x, const double *w_h, const double *z,
                             const double *h, const double *grad_h, const double *h0,
                             double *grad_z, double *grad_x, double *grad_h0,
                             double *grad_w_x, double *grad_w_h, double *bias_partials,
                             int kind, double p0, double p1, int n_threads)
    int vp_rnn_built_with_openmp()

ctypedef fused floating:
    float
    double


def built_with_openmp():
    """True when the recurrent loops were built with OpenMP."""
    return bool(vp_rnn_built_with_openmp())


# ---------------------------------------------------------------------- argument checks
cdef int _int(object value, str name, long long lo, long long hi) except? -1:
    """An int (or numpy integer) in [lo, hi]; bools and floats refused."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = operator.index(value)
    if value < lo or value > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return <int>value


cdef int _shape(str name, tuple got, tuple want) except -1:
    if got != want:
        raise ValueError(f"{name} must have shape {want}, got {got}")
    return 0


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


cdef int _dims(vp_rnn_dims *d, Py_ssize_t steps, Py_ssize_t batch, Py_ssize_t n_in,
               Py_ssize_t hidden, object kind, object n_threads) except -1:
    """T, B, F, H >= 1 with T B, F and H BLAS ints (into d); returns the activation id,
    after checking it and n_threads."""
    if steps < 1 or batch < 1 or n_in < 1 or hidden < 1:
        raise ValueError(f"T, B, F and H must be >= 1, got {(steps, batch, n_in, hidden)}")
    if steps * batch > INT_MAX or n_in > INT_MAX or hidden > INT_MAX:
        raise ValueError(f"T B = {steps * batch}, F = {n_in} and H = {hidden} must be at "
                         "most 2**31 - 1")
    _int(n_threads, "n_threads", 1, 1 << 20)
    d.steps, d.batch, d.n_in, d.hidden = steps, batch, n_in, hidden
    return _int(kind, "kind (activation id)", 0, VP_N_ACTIVATIONS - 1)


cdef int _tile(vp_tile *tile, object rows, object cols, str name) except -1:
    tile.rows = _int(rows, name + " rows", 1, INT_MAX)
    tile.cols = _int(cols, name + " cols", 1, INT_MAX)
    return 0


cdef ptrdiff_t _ceil(ptrdiff_t a, ptrdiff_t b) noexcept:
    return (a + b - 1) // b


# ------------------------------------------------------------------------- forward
_FORWARD_NAMES = ("x", "w_x", "w_h", "b", "h0", "z", "h")


def forward(const floating[:, :, ::1] x, const floating[:, ::1] w_x,
            const floating[:, ::1] w_h, const floating[::1] b, const floating[:, ::1] h0,
            floating[:, :, ::1] z, floating[:, :, ::1] h, kind, p0, p1, tiles, n_threads):
    """z = x W_x + b + h_{t-1} W_h and h = phi(z), step by step (h_{-1} = h0).

    x (T, B, F), w_x (F, H), w_h (H, H), b (H,) or (0,) for none, h0 (B, H) or (0, H)
    for zeros: inputs; z and h (T, B, H): outputs. tiles = (batch_tile, proj_rows,
    proj_cols): rows per batch tile of the recurrence and the tile of the (T B, H) input
    projection. kind, p0, p1: the activation (varprop.activations' kernel_id and
    kernel_params)."""
    cdef vp_rnn_dims d
    cdef double c_p0 = p0, c_p1 = p1
    cdef int threads, c_kind
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], Fi = x.shape[2], H = w_h.shape[0]
    c_kind = _dims(&d, T, B, Fi, H, kind, n_threads)
    _shape("w_x", (w_x.shape[0], w_x.shape[1]), (Fi, H))
    _shape("w_h", (w_h.shape[0], w_h.shape[1]), (H, H))
    if b.shape[0] != 0:
        _shape("b", (b.shape[0],), (H,))
    if h0.shape[0] != 0:
        _shape("h0", (h0.shape[0], h0.shape[1]), (B, H))
    _shape("z", (z.shape[0], z.shape[1], z.shape[2]), (T, B, H))
    _shape("h", (h.shape[0], h.shape[1], h.shape[2]), (T, B, H))
    batch_tile, proj_rows, proj_cols = tiles
    d.batch_tile = _int(batch_tile, "batch_tile", 1, INT_MAX)
    _tile(&d.proj, proj_rows, proj_cols, "proj")
    _disjoint(_FORWARD_NAMES, [np.asarray(x), np.asarray(w_x), np.asarray(w_h),
                               np.asarray(b), np.asarray(h0), np.asarray(z),
                               np.asarray(h)], 5)
    # more threads than the larger phase has tasks would only wait
    threads = <int>min(<ptrdiff_t>n_threads, max(_ceil(B, d.batch_tile),
                                                 _ceil(T * B, d.proj.rows)
                                                 * _ceil(H, d.proj.cols)))
    cdef const floating *bp = &b[0] if b.shape[0] != 0 else NULL
    cdef const floating *hp = &h0[0, 0] if h0.shape[0] != 0 else NULL
    with nogil:
        if floating is float:
            vp_rnn_forward_f32(<vp_sgemm_fn>sgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                               bp, hp, &z[0, 0, 0], &h[0, 0, 0], c_kind, c_p0, c_p1, threads)
        else:
            vp_rnn_forward_f64(<vp_dgemm_fn>dgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                               bp, hp, &z[0, 0, 0], &h[0, 0, 0], c_kind, c_p0, c_p1, threads)


# ------------------------------------------------------------------------ backward
_BACKWARD_NAMES = ("x", "w_x", "w_h", "z", "h", "grad_h", "h0", "grad_z", "grad_x",
                   "grad_h0", "grad_w_x", "grad_w_h", "bias_partials")


def backward(const floating[:, :, ::1] x, const floating[:, ::1] w_x,
             const floating[:, ::1] w_h, const floating[:, :, ::1] z,
             const floating[:, :, ::1] h, const floating[:, :, ::1] grad_h,
             const floating[:, ::1] h0, floating[:, :, ::1] grad_z,
             floating[:, :, ::1] grad_x, floating[:, ::1] grad_h0, floating[:, ::1] grad_w_x,
             floating[:, ::1] grad_w_h, double[:, ::1] bias_partials, kind, p0, p1, tiles,
             n_threads):
    """Backward through time of :func:`forward` given grad_h = dL/dh_t (T, B, H): grad_z
    (T, B, H) = dL/dz_t, grad_x (T, B, F), grad_h0 (B, H), grad_w_x (F, H), grad_w_h
    (H, H), and float64 bias_partials (ceil(T B / bias_block), H), the column sums of
    grad_z per block of bias_block rows (the caller adds them in order). h0 (B, H) or
    (0, H) for zeros. tiles = (batch_tile, grad_x_rows, grad_x_cols, grad_w_x_rows,
    grad_w_x_cols, grad_w_h_rows, grad_w_h_cols, bias_block)."""
    cdef vp_rnn_dims d
    cdef double c_p0 = p0, c_p1 = p1
    cdef int threads, c_kind
    cdef Py_ssize_t T = x.shape[0], B = x.shape[1], Fi = x.shape[2], H = w_h.shape[0]
    c_kind = _dims(&d, T, B, Fi, H, kind, n_threads)
    _shape("w_x", (w_x.shape[0], w_x.shape[1]), (Fi, H))
    _shape("w_h", (w_h.shape[0], w_h.shape[1]), (H, H))
    _shape("z", (z.shape[0], z.shape[1], z.shape[2]), (T, B, H))
    _shape("h", (h.shape[0], h.shape[1], h.shape[2]), (T, B, H))
    _shape("grad_h", (grad_h.shape[0], grad_h.shape[1], grad_h.shape[2]), (T, B, H))
    _shape("grad_z", (grad_z.shape[0], grad_z.shape[1], grad_z.shape[2]), (T, B, H))
    if h0.shape[0] != 0:
        _shape("h0", (h0.shape[0], h0.shape[1]), (B, H))
    _shape("grad_x", (grad_x.shape[0], grad_x.shape[1], grad_x.shape[2]), (T, B, Fi))
    _shape("grad_h0", (grad_h0.shape[0], grad_h0.shape[1]), (B, H))
    _shape("grad_w_x", (grad_w_x.shape[0], grad_w_x.shape[1]), (Fi, H))
    _shape("grad_w_h", (grad_w_h.shape[0], grad_w_h.shape[1]), (H, H))
    batch_tile, xr, xc, wxr, wxc, whr, whc, block = tiles
    d.batch_tile = _int(batch_tile, "batch_tile", 1, INT_MAX)
    _tile(&d.grad_x, xr, xc, "grad_x")
    _tile(&d.grad_w_x, wxr, wxc, "grad_w_x")
    _tile(&d.grad_w_h, whr, whc, "grad_w_h")
    d.bias_block = _int(block, "bias_block", 1, INT_MAX)
    _shape("bias_partials", (bias_partials.shape[0], bias_partials.shape[1]),
           (_ceil(T * B, d.bias_block), H))
    _disjoint(_BACKWARD_NAMES, [
        np.asarray(x), np.asarray(w_x), np.asarray(w_h), np.asarray(z), np.asarray(h),
        np.asarray(grad_h), np.asarray(h0), np.asarray(grad_z), np.asarray(grad_x),
        np.asarray(grad_h0), np.asarray(grad_w_x), np.asarray(grad_w_h),
        np.asarray(bias_partials)], 7)
    # more threads than the larger phase has tasks would only wait
    threads = <int>min(<ptrdiff_t>n_threads, max(
        _ceil(B, d.batch_tile),
        _ceil(T * B, d.grad_x.rows) * _ceil(Fi, d.grad_x.cols)
        + _ceil(Fi, d.grad_w_x.rows) * _ceil(H, d.grad_w_x.cols)
        + _ceil(H, d.grad_w_h.rows) * _ceil(H, d.grad_w_h.cols) + _ceil(T * B, d.bias_block)))
    cdef const floating *hp = &h0[0, 0] if h0.shape[0] != 0 else NULL
    with nogil:
        if floating is float:
            vp_rnn_backward_f32(<vp_sgemm_fn>sgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                                &z[0, 0, 0], &h[0, 0, 0], &grad_h[0, 0, 0], hp,
                                &grad_z[0, 0, 0], &grad_x[0, 0, 0], &grad_h0[0, 0],
                                &grad_w_x[0, 0], &grad_w_h[0, 0], &bias_partials[0, 0],
                                c_kind, c_p0, c_p1, threads)
        else:
            vp_rnn_backward_f64(<vp_dgemm_fn>dgemm, &d, &x[0, 0, 0], &w_x[0, 0], &w_h[0, 0],
                                &z[0, 0, 0], &h[0, 0, 0], &grad_h[0, 0, 0], hp,
                                &grad_z[0, 0, 0], &grad_x[0, 0, 0], &grad_h0[0, 0],
                                &grad_w_x[0, 0], &grad_w_h[0, 0], &bias_partials[0, 0],
                                c_kind, c_p0, c_p1, threads)
