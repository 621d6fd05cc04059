# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Fused dense-layer kernels: BLAS GEMM on fixed tiles inside an OpenMP parallel region,
with the epilogue (bias, activation, statistics) applied to each tile while it is hot.

Everything here trusts its caller (varprop.kernels validates shapes, dtypes, contiguity
and allocates). The tile grid depends on the shapes only, never on the thread count, and
every reduction runs in a fixed order afterwards: results are bitwise identical for any
number of threads.
"""

from cython.parallel cimport prange
from libc.stddef cimport ptrdiff_t
from scipy.linalg.cython_blas cimport sgemm, dgemm

cdef extern from "vp_activations.h" nogil:
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

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    static int vp_max_threads(void) { return omp_get_max_threads(); }
    #else
    static int vp_max_threads(void) { return 1; }
    #endif
    """
    int vp_max_threads() nogil

ctypedef fused floating:
    float
    double


def built_with_openmp():
    """True when the compiled kernels were built with OpenMP."""
    return bool(vp_built_with_openmp())


def openmp_max_threads():
    """omp_get_max_threads() (1 without OpenMP): the default thread count."""
    return vp_max_threads()


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


def forward(const floating[:, ::1] x,      # IN  (batch, n_in)
            const floating[:, ::1] w,      # IN  (n_in, n_out)
            const floating[::1] bias,      # IN  (n_out,), or length 0 for no bias
            floating[:, ::1] z,            # OUT (batch, n_out) pre-activation
            floating[:, ::1] a,            # OUT (batch, n_out) activation
            double[:, :, ::1] moments,     # OUT (6, n_row_tiles, n_out) or (0, 0, 0)
            int kind, double p0, double p1,
            int tile_rows, int tile_cols, int n_threads):
    """z = x @ w + bias, a = phi(z), tile by tile; per-tile column moments if asked.

    moments[0:3] are the shift, sum and sum of squares of deviations of z per row tile
    and column; moments[3:6] the same for a. The caller combines them in a fixed order.
    """
    cdef int batch = x.shape[0]
    cdef int n_in = x.shape[1]
    cdef int n_out = w.shape[1]
    cdef int n_row_tiles = (batch + tile_rows - 1) // tile_rows
    cdef int n_col_tiles = (n_out + tile_cols - 1) // tile_cols
    cdef int n_tiles = n_row_tiles * n_col_tiles
    cdef const floating *xp = &x[0, 0]
    cdef const floating *wp = &w[0, 0]
    cdef const floating *bp = &bias[0] if bias.shape[0] > 0 else NULL
    cdef floating *zp = &z[0, 0]
    cdef floating *ap = &a[0, 0]
    cdef double *mp = &moments[0, 0, 0] if moments.shape[0] > 0 else NULL
    cdef ptrdiff_t plane = <ptrdiff_t>n_row_tiles * n_out
    cdef int t, rt, ct

    with nogil:
        for t in prange(n_tiles, num_threads=n_threads, schedule="static"):
            rt = t // n_col_tiles
            ct = t % n_col_tiles
            _forward_tile(xp, wp, bp, zp, ap, mp, plane, n_in, n_out,
                          rt * tile_rows, min(tile_rows, batch - rt * tile_rows),
                          ct * tile_cols, min(tile_cols, n_out - ct * tile_cols),
                          <ptrdiff_t>rt * n_out + ct * tile_cols, kind, p0, p1)


# ------------------------------------------------------------------------ backward
def backward(const floating[:, ::1] x,      # IN  (batch, n_in)
             const floating[:, ::1] w,      # IN  (n_in, n_out)
             const floating[:, ::1] z,      # IN  (batch, n_out) pre-activation
             const floating[:, ::1] grad_a, # IN  (batch, n_out) dL/da
             floating[:, ::1] grad_z,       # OUT (batch, n_out) dL/dz
             floating[:, ::1] grad_x,       # OUT (batch, n_in)
             floating[:, ::1] grad_w,       # OUT (n_in, n_out)
             double[:, ::1] bias_partials,  # OUT (n_row_blocks, n_out) column sums of dz
             int kind, double p0, double p1,
             int block_rows, int dx_tile_rows, int dx_tile_cols,
             int dw_tile_rows, int dw_tile_cols, int n_threads):
    """Three phases: dz = g * phi'(z) with per-row-block bias partials; then one parallel
    loop over the dX tiles (dz @ w^T, by rows and input columns) and the dW tiles
    (x^T @ dz, by input rows and output columns, the whole batch as inner dimension)."""
    cdef int batch = x.shape[0]
    cdef int n_in = x.shape[1]
    cdef int n_out = w.shape[1]
    cdef int n_blocks = (batch + block_rows - 1) // block_rows
    cdef int dx_rt = (batch + dx_tile_rows - 1) // dx_tile_rows
    cdef int dx_ct = (n_in + dx_tile_cols - 1) // dx_tile_cols
    cdef int dw_rt = (n_in + dw_tile_rows - 1) // dw_tile_rows
    cdef int dw_ct = (n_out + dw_tile_cols - 1) // dw_tile_cols
    cdef int n_dx = dx_rt * dx_ct
    cdef int n_tiles = n_dx + dw_rt * dw_ct
    cdef const floating *xp = &x[0, 0]
    cdef const floating *wp = &w[0, 0]
    cdef const floating *zp = &z[0, 0]
    cdef const floating *gp = &grad_a[0, 0]
    cdef floating *dzp = &grad_z[0, 0]
    cdef floating *dxp = &grad_x[0, 0]
    cdef floating *dwp = &grad_w[0, 0]
    cdef double *bpp = &bias_partials[0, 0]
    cdef int blk, r0, rows, t, u, i0, c0, cols
    cdef ptrdiff_t off

    with nogil:
        for blk in prange(n_blocks, num_threads=n_threads, schedule="static"):
            r0 = blk * block_rows
            rows = min(block_rows, batch - r0)
            off = <ptrdiff_t>r0 * n_out
            _backward_epilogue(kind, p0, p1, zp + off, gp + off, dzp + off,
                               <ptrdiff_t>rows * n_out)
            _column_sums(dzp + off, n_out, rows, n_out, bpp + <ptrdiff_t>blk * n_out)

        for t in prange(n_tiles, num_threads=n_threads, schedule="dynamic"):
            if t < n_dx:
                # dX[r0:, c0:] = dz[r0:] @ w[c0:]^T  (column-major: w'^T-op times dz^T)
                r0 = (t // dx_ct) * dx_tile_rows
                c0 = (t % dx_ct) * dx_tile_cols
                rows = min(dx_tile_rows, batch - r0)
                cols = min(dx_tile_cols, n_in - c0)
                _gemm(c'T', c'N', cols, rows, n_out, wp + <ptrdiff_t>c0 * n_out, n_out,
                      dzp + <ptrdiff_t>r0 * n_out, n_out,
                      dxp + <ptrdiff_t>r0 * n_in + c0, n_in)
            else:
                # dW[i0:, c0:] = x[:, i0:]^T @ dz[:, c0:]  (column-major: dz^T x)
                u = t - n_dx
                i0 = (u // dw_ct) * dw_tile_rows
                c0 = (u % dw_ct) * dw_tile_cols
                rows = min(dw_tile_rows, n_in - i0)
                cols = min(dw_tile_cols, n_out - c0)
                _gemm(c'N', c'T', cols, rows, batch, dzp + c0, n_out, xp + i0, n_in,
                      dwp + <ptrdiff_t>i0 * n_out + c0, n_out)


# ---------------------------------------------------------------------- activations
def activation_apply(const floating[::1] x, floating[::1] out, int kind, double p0,
                     double p1, bint derivative):
    """out = phi(x) or phi'(x) with the C math of the kernels (for tests and for users
    who want the fast activation alone)."""
    cdef ptrdiff_t n = x.shape[0]
    if n == 0:
        return
    with nogil:
        if floating is float:
            vp_activation_apply_f32(kind, p0, p1, derivative, &x[0], &out[0], n)
        else:
            vp_activation_apply_f64(kind, p0, p1, derivative, &x[0], &out[0], n)
