# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fused dense-layer kernels: BLAS GEMM on fixed tiles inside an OpenMP parallel region,
with the epilogue (bias, activation, statistics) applied to each tile while it is hot.

Every entry point checks its arguments before touching memory, in O(1) on the buffer
descriptors (no pass over the data): each array is float32 or float64 (outputs of
statistics float64), C-contiguous, of the documented rank and of a shape consistent with
the others; outputs are writeable and share no memory with any other argument (the C
loops declare their pointers ``restrict``); the activation id is known; tile sizes and
thread counts are >= 1 and every derived count fits a C int. A violation is a TypeError
(type or dtype) or ValueError naming the argument, so no call from Python can read or
write out of bounds. varprop.kernels gives the user-facing checks and allocates.

The tile grid depends on the shapes only, never on the thread count, and every
reduction runs in a fixed order afterwards: results are bitwise identical for any number
of threads (a thread count above the number of tiles is lowered to it: same result).
"""

from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_STRIDES, PyBuffer_IsContiguous,
                             PyBuffer_Release, PyObject_GetBuffer)
from cpython.number cimport PyNumber_Index
from cython.parallel cimport prange
from libc.limits cimport INT_MAX
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport uintptr_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "vp_activations.h" nogil:
    enum: VP_N_ACTIVATIONS
    ctypedef struct vp_moments:
        double *shift
        double *s1
        double *s2
    void vp_forward_epilogue_f32(int kind, double p0, double p1, float *z, float *a,
                                 ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                                 const float *bias, vp_moments *zm, vp_moments *am)
    void vp_forward_epilogue_f64(int kind, double p0, double p1, double *z, double *a,
                                 ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                                 const double *bias, vp_moments *zm, vp_moments *am)
    void vp_backward_epilogue_f32(int kind, double p0, double p1, const float *z,
                                  const float *g, float *dz, ptrdiff_t n)
    void vp_backward_epilogue_f64(int kind, double p0, double p1, const double *z,
                                  const double *g, double *dz, ptrdiff_t n)
    void vp_activation_apply_f32(int kind, double p0, double p1, int derivative,
                                 const float *x, float *out, ptrdiff_t n)
    void vp_activation_apply_f64(int kind, double p0, double p1, int derivative,
                                 const double *x, double *out, ptrdiff_t n)
    void vp_column_sums_f32(const float *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                            double *acc)
    void vp_column_sums_f64(const double *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                            double *acc)
    int vp_built_with_openmp()
    double vp_pooled_var_f32(const float *x, ptrdiff_t n)
    double vp_pooled_var_f64(const double *x, ptrdiff_t n)
    int vp_get_isa_level()
    int vp_isa_best()
    int vp_set_isa_level(int level)

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int vp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int vp_max_threads(void) { return 1; }
    #endif
    static int vp_little_endian(void) { const unsigned u = 1; return *(const unsigned char *)&u; }
    """
    int vp_max_threads() nogil
    int vp_little_endian() nogil

ctypedef fused floating:
    float
    double

#: Number of activation kernels: ids 0 .. N_ACTIVATIONS - 1, in ACTIVATION_NAMES order.
N_ACTIVATIONS = VP_N_ACTIVATIONS

cdef char _OWN_ORDER = c'<' if vp_little_endian() else c'>'
_DTYPES = {4: "float32", 8: "float64"}


def built_with_openmp():
    """True when the compiled kernels were built with OpenMP."""
    return bool(vp_built_with_openmp())


def openmp_max_threads():
    """omp_get_max_threads() (1 without OpenMP): the default thread count."""
    return vp_max_threads()


# ---------------------------------------------------------------------- argument checks
cdef int _float_size(const char *fmt, Py_ssize_t itemsize) noexcept:
    """4 (float32) or 8 (float64) for a native-order 'f' / 'd' buffer format, else 0."""
    if fmt == NULL:  # NULL means unsigned bytes
        return 0
    if fmt[0] == c'@' or fmt[0] == c'=' or fmt[0] == _OWN_ORDER:
        fmt += 1
    if fmt[0] == c'f' and fmt[1] == 0 and itemsize == 4:
        return 4
    if fmt[0] == c'd' and fmt[1] == 0 and itemsize == 8:
        return 8
    return 0


cdef int _fail(Py_buffer *view, exc, str message) except -1:
    PyBuffer_Release(view)
    raise exc(message)


cdef int _take(Py_buffer *view, object obj, str name, int ndim, bint writable,
               int size, str like) except -1:
    """Acquire ``obj``'s buffer into ``view`` (the caller releases it) and check it: rank
    ``ndim``, float32 or float64 (``size`` bytes, as argument ``like``, unless 0),
    C-contiguous, writeable if ``writable``, dimensions <= INT_MAX. Returns the item size;
    on error nothing stays acquired."""
    cdef int got, i
    try:
        PyObject_GetBuffer(obj, view, PyBUF_STRIDES | PyBUF_FORMAT)
    except Exception:  # not a buffer, or one numpy cannot export (object dtype, ...)
        raise TypeError(f"{name} must be a float32 or float64 numpy array, got "
                        f"{type(obj).__name__} {getattr(obj, 'dtype', '')}".rstrip()) from None
    got = _float_size(view.format, view.itemsize)
    if got == 0:
        _fail(view, TypeError, f"{name} must have dtype float32 or float64, got "
              f"{getattr(obj, 'dtype', view.format.decode() if view.format else 'B')}")
    if size != 0 and got != size:
        _fail(view, TypeError, f"{name} must have dtype {_DTYPES[size]} like {like}, "
              f"got {_DTYPES[got]}")
    if view.ndim != ndim:
        _fail(view, ValueError, f"{name} must be {ndim}-D, got {view.ndim}-D shape "
              f"{tuple([view.shape[i] for i in range(view.ndim)])}")
    if not PyBuffer_IsContiguous(view, c'C'):
        _fail(view, ValueError, f"{name} must be C-contiguous (np.ascontiguousarray)")
    if writable and view.readonly:
        _fail(view, ValueError, f"{name} is read-only, but the kernel writes to it")
    for i in range(ndim):
        if view.shape[i] > INT_MAX:
            _fail(view, ValueError, f"{name} has a dimension over 2**31 - 1")
    return got


cdef int _shape(Py_buffer *views, tuple names, int k, Py_ssize_t d0, Py_ssize_t d1,
                Py_ssize_t d2, str what) except -1:
    """Check that argument k has shape (d0, d1[, d2]) (a negative size: any)."""
    cdef Py_buffer *v = &views[k]
    cdef Py_ssize_t want[3]
    want[0], want[1], want[2] = d0, d1, d2
    for i in range(v.ndim):
        if want[i] >= 0 and v.shape[i] != want[i]:
            got = tuple([v.shape[j] for j in range(v.ndim)])
            raise ValueError(f"{names[k]} must have shape {what}, got {got}")
    return 0


cdef int _disjoint(Py_buffer *views, tuple names, int n, int first_out) except -1:
    """Outputs (indices >= first_out) must share no byte with any other argument."""
    cdef int i, j
    cdef uintptr_t a0, a1, b0, b1
    for i in range(first_out, n):
        a0 = <uintptr_t>views[i].buf
        a1 = a0 + <uintptr_t>views[i].len
        for j in range(n):
            b0 = <uintptr_t>views[j].buf
            b1 = b0 + <uintptr_t>views[j].len
            if j != i and views[i].len and views[j].len and a0 < b1 and b0 < a1:
                raise ValueError(f"{names[i]} overlaps {names[j]} in memory: each output "
                                 "must be a separate array")
    return 0


cdef int _int_arg(object value, str name, int lo, int hi) except? -1:
    """An integer argument in [lo, hi]: an int or an object with __index__ (numpy ints;
    bool counts as an int, as in Python), never a float."""
    cdef long long v
    if not isinstance(value, int):
        try:
            value = PyNumber_Index(value)
        except TypeError:
            raise TypeError(f"{name} must be an integer, got {type(value).__name__}") from None
    try:
        v = value
    except OverflowError:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}") from None
    if v < lo or v > hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return <int>v


cdef double _real_arg(object value, str name) except? -1.0:
    try:
        return value
    except TypeError:
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None


cdef long long _ceil_div(long long a, long long b) noexcept:
    return (a + b - 1) // b


cdef void _release(Py_buffer *views, int held) noexcept:
    cdef int i
    for i in range(held):
        PyBuffer_Release(&views[i])


# ------------------------------------------------------------------------- helpers
cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       const floating *a, int lda, const floating *b, int ldb,
                       floating *c, int ldc) noexcept nogil:
    """Column-major C (m x n) = op(A) op(B), single call of the BLAS in scipy."""
    cdef floating one = 1.0
    cdef floating zero = 0.0
    cdef int i, j
    if k == 0:  # an empty inner dimension: the product is zero (BLAS may skip C)
        for j in range(n):
            for i in range(m):
                c[i + <ptrdiff_t>j * ldc] = 0.0
        return
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &one, <float *>a, &lda, <float *>b, &ldb,
              &zero, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &one, <double *>a, &lda, <double *>b, &ldb,
              &zero, c, &ldc)


cdef inline void _forward_epilogue(int kind, double p0, double p1, floating *z, floating *a,
                                   ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                                   const floating *bias, vp_moments *zm,
                                   vp_moments *am) noexcept nogil:
    if floating is float:
        vp_forward_epilogue_f32(kind, p0, p1, z, a, ld, rows, cols, bias, zm, am)
    else:
        vp_forward_epilogue_f64(kind, p0, p1, z, a, ld, rows, cols, bias, zm, am)


cdef inline void _column_sums(const floating *x, ptrdiff_t ld, ptrdiff_t rows,
                              ptrdiff_t cols, double *acc) noexcept nogil:
    if floating is float:
        vp_column_sums_f32(x, ld, rows, cols, acc)
    else:
        vp_column_sums_f64(x, ld, rows, cols, acc)


cdef inline void _backward_epilogue(int kind, double p0, double p1, const floating *z,
                                    const floating *g, floating *dz,
                                    ptrdiff_t n) noexcept nogil:
    if floating is float:
        vp_backward_epilogue_f32(kind, p0, p1, z, g, dz, n)
    else:
        vp_backward_epilogue_f64(kind, p0, p1, z, g, dz, n)


# ------------------------------------------------------------------------- forward
cdef void _forward_tile(const floating *x, const floating *w, const floating *bias,
                        floating *z, floating *a, double *moments, ptrdiff_t plane,
                        int n_in, int n_out, int r0, int rows, int c0, int cols,
                        ptrdiff_t moment_offset, int kind, double p0,
                        double p1) noexcept nogil:
    """One output tile: GEMM, then bias + activation (+ moments) while it is in cache.
    A function of its own so every per-tile variable is private to the calling thread."""
    cdef vp_moments zm, am
    cdef ptrdiff_t out = <ptrdiff_t>r0 * n_out + c0
    # row-major z[r0:, c0:] = x[r0:] @ w[:, c0:] is column-major z^T = w^T x^T
    _gemm(c'N', c'N', cols, rows, n_in, w + c0, n_out, x + <ptrdiff_t>r0 * n_in, n_in,
          z + out, n_out)
    if moments == NULL:
        _forward_epilogue(kind, p0, p1, z + out, a + out, n_out, rows, cols,
                          (bias + c0) if bias != NULL else NULL, NULL, NULL)
        return
    zm.shift = moments + moment_offset
    zm.s1 = moments + plane + moment_offset
    zm.s2 = moments + 2 * plane + moment_offset
    am.shift = moments + 3 * plane + moment_offset
    am.s1 = moments + 4 * plane + moment_offset
    am.s2 = moments + 5 * plane + moment_offset
    _forward_epilogue(kind, p0, p1, z + out, a + out, n_out, rows, cols,
                      (bias + c0) if bias != NULL else NULL, &zm, &am)


cdef void _forward_run(floating tag, Py_buffer *v, bint stats, int batch, int n_in,
                       int n_out, int n_row_tiles, int n_col_tiles, int tile_rows,
                       int tile_cols, int kind, double p0, double p1,
                       int n_threads) noexcept nogil:
    """The tile loop over the checked buffers v (forward's order); tag picks the dtype."""
    cdef const floating *xp = <const floating *>v[0].buf
    cdef const floating *wp = <const floating *>v[1].buf
    cdef const floating *bp = <const floating *>v[2].buf if v[2].len else NULL
    cdef floating *zp = <floating *>v[3].buf
    cdef floating *ap = <floating *>v[4].buf
    cdef double *mp = <double *>v[5].buf if stats else NULL
    cdef ptrdiff_t plane = <ptrdiff_t>n_row_tiles * n_out
    cdef int n_tiles = n_row_tiles * n_col_tiles
    cdef int t, rt, ct
    for t in prange(n_tiles, num_threads=n_threads, schedule="static"):
        rt = t // n_col_tiles
        ct = t % n_col_tiles
        _forward_tile(xp, wp, bp, zp, ap, mp, plane, n_in, n_out,
                      rt * tile_rows, min(tile_rows, batch - rt * tile_rows),
                      ct * tile_cols, min(tile_cols, n_out - ct * tile_cols),
                      <ptrdiff_t>rt * n_out + ct * tile_cols, kind, p0, p1)


_FORWARD_NAMES = ("x", "w", "bias", "z", "a", "moments")


def forward(x, w, bias, z, a, moments, kind, p0, p1, tile_rows, tile_cols, n_threads):
    """z = x @ w + bias, a = phi(z), tile by tile; per-tile column moments if asked.

    x (batch, n_in), w (n_in, n_out), bias (n_out,) or (0,) for none: inputs; z and a
    (batch, n_out): outputs of x's dtype; moments float64 (6, n_row_tiles, n_out) with
    n_row_tiles = ceil(batch / tile_rows), or first dimension 0 for no statistics.
    moments[0:3] are the shift, sum and sum of squares of deviations of z per row tile and
    column; moments[3:6] the same for a. The caller combines them in a fixed order.
    """
    cdef Py_buffer v[6]
    cdef int held = 0, size, k
    cdef int c_kind = _int_arg(kind, "kind (activation id)", 0, VP_N_ACTIVATIONS - 1)
    cdef double c_p0 = _real_arg(p0, "p0"), c_p1 = _real_arg(p1, "p1")
    cdef int c_rows = _int_arg(tile_rows, "tile_rows", 1, INT_MAX)
    cdef int c_cols = _int_arg(tile_cols, "tile_cols", 1, INT_MAX)
    cdef int threads = _int_arg(n_threads, "n_threads", 1, INT_MAX)
    cdef Py_ssize_t batch, n_in, n_out
    cdef long long n_row_tiles, n_col_tiles
    cdef bint stats
    try:
        size = _take(&v[0], x, "x", 2, False, 0, ""); held += 1
        for k, arr, ndim, out in ((1, w, 2, False), (2, bias, 1, False), (3, z, 2, True),
                                  (4, a, 2, True)):
            _take(&v[k], arr, _FORWARD_NAMES[k], ndim, out, size, "x"); held += 1
        _take(&v[5], moments, "moments", 3, True, 8, "the statistics (float64)"); held += 1
        batch, n_in, n_out = v[0].shape[0], v[0].shape[1], v[1].shape[1]
        _shape(v, _FORWARD_NAMES, 1, n_in, -1, -1, f"({n_in}, n_out): x has {n_in} columns")
        if v[2].shape[0] != 0:
            _shape(v, _FORWARD_NAMES, 2, n_out, -1, -1, f"({n_out},) or (0,)")
        for k in (3, 4):
            _shape(v, _FORWARD_NAMES, k, batch, n_out, -1, f"(batch, n_out) = {(batch, n_out)}")
        n_row_tiles = _ceil_div(batch, c_rows)
        n_col_tiles = _ceil_div(n_out, c_cols)
        if n_row_tiles * n_col_tiles > INT_MAX:
            raise ValueError(f"tile_rows={c_rows}, tile_cols={c_cols}: more than 2**31 - 1 tiles")
        stats = v[5].shape[0] != 0
        if stats:
            _shape(v, _FORWARD_NAMES, 5, 6, n_row_tiles, n_out,
                   f"(6, ceil(batch / tile_rows), n_out) = {(6, n_row_tiles, n_out)} or (0, ...)")
        _disjoint(v, _FORWARD_NAMES, 6, 3)
        if n_row_tiles * n_col_tiles == 0:
            return
        threads = <int>min(<long long>threads, n_row_tiles * n_col_tiles)
        with nogil:
            if size == 4:
                _forward_run(<float>0, v, stats, <int>batch, <int>n_in, <int>n_out,
                             <int>n_row_tiles, <int>n_col_tiles, c_rows, c_cols, c_kind,
                             c_p0, c_p1, threads)
            else:
                _forward_run(<double>0, v, stats, <int>batch, <int>n_in, <int>n_out,
                             <int>n_row_tiles, <int>n_col_tiles, c_rows, c_cols, c_kind,
                             c_p0, c_p1, threads)
    finally:
        _release(v, held)


# the backward pass (dz, then the dX and dW tiles, then dW's row blocks summed) and
# activation_apply, pooled_var and the instruction-set switches, each in a file of its own
# so that none grows long; textually part of this module
include "_kernels_backward.pxi"
include "_kernels_misc.pxi"
