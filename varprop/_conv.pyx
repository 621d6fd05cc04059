# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Convolution and pooling loops over channels-last images (csrc/vp_conv.c), and the
fused convolution forward: per tile of patch rows, im2col into the thread's own buffer,
one BLAS GEMM and the dense kernels' epilogue (csrc/vp_activations.c: bias, activation,
moments) while the tile is in cache.

Private: varprop.conv_kernels validates the user's arguments, picks the geometry and
allocates. Every entry point still checks, in O(1) on the buffer descriptors, what keeps
the C loops in bounds: dtypes (float32 or float64, all alike; argmax int64), C-contiguous
buffers of rank 4 (images) or 2 (patch rows), shapes consistent with the geometry,
kernel sizes, strides and dilations >= 1, pads >= 0, a channel range inside the image,
n_threads >= 1. Images are 2-D, ``(batch, height, width, channels)``; a 1-D signal is an
image of height 1. Results never depend on n_threads (see csrc/vp_conv.h).
"""

from cython.parallel cimport prange, threadid
from libc.stddef cimport ptrdiff_t
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

import numpy as np

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

cdef extern from "vp_conv.h" nogil:
    ctypedef struct vp_geom:
        ptrdiff_t batch, in_h, in_w, channels, out_h, out_w
        ptrdiff_t k_h, k_w, s_h, s_w, d_h, d_w, pad_h, pad_w
    void vp_im2col_f32(const float *x, float *cols, const vp_geom *g, ptrdiff_t c0,
                       ptrdiff_t cg, int n_threads)
    void vp_im2col_f64(const double *x, double *cols, const vp_geom *g, ptrdiff_t c0,
                       ptrdiff_t cg, int n_threads)
    void vp_im2col_rows_f32(const float *x, float *cols, const vp_geom *g, ptrdiff_t c0,
                            ptrdiff_t cg, ptrdiff_t r0, ptrdiff_t nrows)
    void vp_im2col_rows_f64(const double *x, double *cols, const vp_geom *g, ptrdiff_t c0,
                            ptrdiff_t cg, ptrdiff_t r0, ptrdiff_t nrows)
    void vp_col2im_f32(const float *cols, float *gx, const vp_geom *g, ptrdiff_t c0,
                       ptrdiff_t cg, int n_threads)
    void vp_col2im_f64(const double *cols, double *gx, const vp_geom *g, ptrdiff_t c0,
                       ptrdiff_t cg, int n_threads)
    void vp_max_pool_forward_f32(const float *x, float *y, int64_t *argmax,
                                 const vp_geom *g, int n_threads)
    void vp_max_pool_forward_f64(const double *x, double *y, int64_t *argmax,
                                 const vp_geom *g, int n_threads)
    ptrdiff_t vp_max_pool_backward_f32(const float *gy, const int64_t *argmax, float *gx,
                                       const vp_geom *g, int n_threads)
    ptrdiff_t vp_max_pool_backward_f64(const double *gy, const int64_t *argmax,
                                       double *gx, const vp_geom *g, int n_threads)
    void vp_avg_pool_forward_f32(const float *x, float *y, const vp_geom *g,
                                 int include_pad, int n_threads)
    void vp_avg_pool_forward_f64(const double *x, double *y, const vp_geom *g,
                                 int include_pad, int n_threads)
    void vp_avg_pool_backward_f32(const float *gy, float *gx, const vp_geom *g,
                                  int include_pad, int n_threads)
    void vp_avg_pool_backward_f64(const double *gy, double *gx, const vp_geom *g,
                                  int include_pad, int n_threads)
    int vp_conv_built_with_openmp()

ctypedef fused floating:
    float
    double


def built_with_openmp():
    """True when the convolution loops were built with OpenMP."""
    return bool(vp_conv_built_with_openmp())


# ---------------------------------------------------------------------- argument checks
cdef int _threads(object n_threads) except -1:
    if not isinstance(n_threads, int) or n_threads < 1 or n_threads > 1 << 20:
        raise ValueError(f"n_threads must be an int in [1, 2**20], got {n_threads!r}")
    return <int>n_threads


cdef int _geom(vp_geom *g, object geometry, Py_ssize_t *image, Py_ssize_t out_h,
               Py_ssize_t out_w) except -1:
    """Fill g from the image's shape, the output grid and geometry = (k_h, k_w, s_h,
    s_w, d_h, d_w, pad_h, pad_w) (pads: before, i.e. top and left)."""
    values = tuple(geometry)
    if len(values) != 8 or not all(isinstance(v, int) for v in values):
        raise ValueError(f"geometry must be 8 ints (k_h, k_w, s_h, s_w, d_h, d_w, pad_h, "
                         f"pad_w), got {geometry!r}")
    if min(values[:6]) < 1 or min(values[6:]) < 0 or max(values) > 1 << 24:
        raise ValueError(f"geometry needs kernel sizes, strides and dilations >= 1 and "
                         f"pads >= 0, got {geometry!r}")
    if out_h < 0 or out_w < 0:
        raise ValueError(f"the output grid must be non-negative, got {(out_h, out_w)}")
    g.batch, g.in_h, g.in_w, g.channels = image[0], image[1], image[2], image[3]
    g.out_h, g.out_w = out_h, out_w
    g.k_h, g.k_w, g.s_h, g.s_w, g.d_h, g.d_w, g.pad_h, g.pad_w = values
    return 0


cdef int _same(str name, tuple got, tuple want) except -1:
    if got != want:
        raise ValueError(f"{name} must have shape {want}, got {got}")
    return 0


cdef tuple _dims(Py_ssize_t *shape):
    return (shape[0], shape[1], shape[2], shape[3])


cdef int _channels(vp_geom *g, object c0, object cg) except -1:
    if not isinstance(c0, int) or not isinstance(cg, int) or c0 < 0 or cg < 1 \
            or c0 + cg > g.channels:
        raise ValueError(f"channels [c0, c0 + cg) = [{c0}, {c0} + {cg}) must lie in "
                         f"[0, {g.channels}) with cg >= 1")
    return 0


# ------------------------------------------------------------------------- im2col
def im2col(const floating[:, :, :, ::1] x, floating[:, ::1] cols, geometry, out_h, out_w,
           c0, cg, n_threads):
    """cols[(b, oh, ow), (kh, kw, c)] = x[b, ih, iw, c0 + c] (0 in the padding):
    x (batch, H, W, C), cols (batch out_h out_w, k_h k_w cg)."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    _geom(&g, geometry, x.shape, out_h, out_w)
    _channels(&g, c0, cg)
    _same("cols", (cols.shape[0], cols.shape[1]),
          (g.batch * g.out_h * g.out_w, g.k_h * g.k_w * <ptrdiff_t>cg))
    cdef ptrdiff_t start = c0, width = cg
    if cols.shape[0] == 0 or cols.shape[1] == 0:
        return
    with nogil:
        if floating is float:
            vp_im2col_f32(&x[0, 0, 0, 0], &cols[0, 0], &g, start, width, threads)
        else:
            vp_im2col_f64(&x[0, 0, 0, 0], &cols[0, 0], &g, start, width, threads)


def col2im(const floating[:, ::1] cols, floating[:, :, :, ::1] gx, geometry, out_h, out_w,
           c0, cg, n_threads):
    """The adjoint of im2col: gx[..., c0:c0 + cg] = the sum of each entry's copies in
    cols (taps added in order); the other channels of gx are left alone."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    _geom(&g, geometry, gx.shape, out_h, out_w)
    _channels(&g, c0, cg)
    _same("cols", (cols.shape[0], cols.shape[1]),
          (g.batch * g.out_h * g.out_w, g.k_h * g.k_w * <ptrdiff_t>cg))
    cdef ptrdiff_t start = c0, width = cg
    if gx.shape[0] * gx.shape[1] * gx.shape[2] == 0:
        return
    with nogil:
        if floating is float:
            vp_col2im_f32(&cols[0, 0] if cols.shape[0] * cols.shape[1] else NULL,
                          &gx[0, 0, 0, 0], &g, start, width, threads)
        else:
            vp_col2im_f64(&cols[0, 0] if cols.shape[0] * cols.shape[1] else NULL,
                          &gx[0, 0, 0, 0], &g, start, width, threads)


# ------------------------------------------------------------------------- pooling
def max_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y,
                     int64_t[:, :, :, ::1] argmax, geometry, n_threads):
    """y = the max of each window, argmax = its flat position ih W + iw (PyTorch's
    rule); y and argmax (batch, out_h, out_w, C), geometry with dilations 1."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    _geom(&g, geometry, x.shape, y.shape[1], y.shape[2])
    _same("y", (y.shape[0], y.shape[3]), (g.batch, g.channels))
    _same("argmax", _dims(argmax.shape), _dims(y.shape))
    if y.shape[0] * y.shape[1] * y.shape[2] * y.shape[3] == 0:
        return
    if g.in_h * g.in_w == 0:
        raise ValueError("max pooling of an empty image")
    with nogil:
        if floating is float:
            vp_max_pool_forward_f32(&x[0, 0, 0, 0], &y[0, 0, 0, 0], &argmax[0, 0, 0, 0],
                                    &g, threads)
        else:
            vp_max_pool_forward_f64(&x[0, 0, 0, 0], &y[0, 0, 0, 0], &argmax[0, 0, 0, 0],
                                    &g, threads)


def max_pool_backward(const floating[:, :, :, ::1] gy, const int64_t[:, :, :, ::1] argmax,
                      floating[:, :, :, ::1] gx, n_threads):
    """gx = 0, then each gy entry added where argmax points (outputs in order); a
    ValueError if argmax points outside the image (those entries are skipped)."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    cdef ptrdiff_t bad = 0
    _geom(&g, (1, 1, 1, 1, 1, 1, 0, 0), gx.shape, gy.shape[1], gy.shape[2])
    _same("gy", (gy.shape[0], gy.shape[3]), (g.batch, g.channels))
    _same("argmax", _dims(argmax.shape), _dims(gy.shape))
    if gx.shape[0] * gx.shape[1] * gx.shape[2] * gx.shape[3] == 0:
        return
    if gy.shape[1] * gy.shape[2] == 0:
        gx[...] = 0
        return
    with nogil:
        if floating is float:
            bad = vp_max_pool_backward_f32(&gy[0, 0, 0, 0], &argmax[0, 0, 0, 0],
                                           &gx[0, 0, 0, 0], &g, threads)
        else:
            bad = vp_max_pool_backward_f64(&gy[0, 0, 0, 0], &argmax[0, 0, 0, 0],
                                           &gx[0, 0, 0, 0], &g, threads)
    if bad:
        raise ValueError(f"argmax holds {bad} index(es) outside the image's "
                         f"{g.in_h * g.in_w} positions")


def avg_pool_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] y, geometry,
                     bint include_pad, n_threads):
    """y = each window's mean (include_pad: the padding counts in the divisor)."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    _geom(&g, geometry, x.shape, y.shape[1], y.shape[2])
    _same("y", (y.shape[0], y.shape[3]), (g.batch, g.channels))
    if y.shape[0] * y.shape[1] * y.shape[2] * y.shape[3] == 0:
        return
    with nogil:
        if floating is float:
            vp_avg_pool_forward_f32(&x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, include_pad,
                                    threads)
        else:
            vp_avg_pool_forward_f64(&x[0, 0, 0, 0], &y[0, 0, 0, 0], &g, include_pad,
                                    threads)


def avg_pool_backward(const floating[:, :, :, ::1] gy, floating[:, :, :, ::1] gx, geometry,
                      bint include_pad, n_threads):
    """gx = the sum over the windows holding each input of gy / the window's count."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    _geom(&g, geometry, gx.shape, gy.shape[1], gy.shape[2])
    _same("gy", (gy.shape[0], gy.shape[3]), (g.batch, g.channels))
    if gx.shape[0] * gx.shape[1] * gx.shape[2] * gx.shape[3] == 0:
        return
    if gy.shape[1] * gy.shape[2] == 0:
        gx[...] = 0
        return
    with nogil:
        if floating is float:
            vp_avg_pool_backward_f32(&gy[0, 0, 0, 0], &gx[0, 0, 0, 0], &g, include_pad,
                                     threads)
        else:
            vp_avg_pool_backward_f64(&gy[0, 0, 0, 0], &gx[0, 0, 0, 0], &g, include_pad,
                                     threads)


# ------------------------------------------------------------ fused forward (per tile)
cdef void _gemm(floating *tag, int m, int n, int k, const floating *a, int lda,
                const floating *b, int ldb, floating *c, int ldc) noexcept nogil:
    """Column-major C (m x n) = A (m x k) B (k x n), one call of scipy's BLAS."""
    cdef floating one = 1.0, zero = 0.0
    cdef char no = c'N'
    if floating is float:
        sgemm(&no, &no, &m, &n, &k, &one, <float *>a, &lda, <float *>b, &ldb, &zero, c, &ldc)
    else:
        dgemm(&no, &no, &m, &n, &k, &one, <double *>a, &lda, <double *>b, &ldb, &zero, c,
              &ldc)


cdef void _forward_tile(const floating *x, const floating *w, const floating *bias,
                        floating *z, floating *a, double *moments, floating *buf,
                        const vp_geom *g, ptrdiff_t c0, ptrdiff_t cg, ptrdiff_t o0, int og,
                        ptrdiff_t ld, int taps, int tile_rows, ptrdiff_t rows, ptrdiff_t t,
                        ptrdiff_t plane, bint direct, int kind, double p0,
                        double p1) noexcept nogil:
    """Tile t: its patch rows (im2col into this thread's buf, or x itself for a 1x1
    kernel), the GEMM into z[rows, o0:o0 + og], then bias, activation and moments."""
    cdef ptrdiff_t r0 = t * tile_rows
    cdef int nr = <int>min(<ptrdiff_t>tile_rows, rows - r0)
    cdef const floating *patches
    cdef int lda
    cdef vp_moments zm, am
    if direct:
        patches, lda = x + r0 * g.channels + c0, <int>g.channels
    else:
        if floating is float:
            vp_im2col_rows_f32(x, buf, g, c0, cg, r0, nr)
        else:
            vp_im2col_rows_f64(x, buf, g, c0, cg, r0, nr)
        patches, lda = buf, taps
    # row-major z[r0:, o0:] = patches @ w is column-major z^T = w^T patches^T
    _gemm(buf, og, nr, taps, w, og, patches, lda, z + r0 * ld + o0, <int>ld)
    if moments != NULL:
        zm.shift, zm.s1, zm.s2 = moments + t * og, moments + plane + t * og, \
            moments + 2 * plane + t * og
        am.shift, am.s1, am.s2 = moments + 3 * plane + t * og, \
            moments + 4 * plane + t * og, moments + 5 * plane + t * og
    if floating is float:
        vp_forward_epilogue_f32(kind, p0, p1, z + r0 * ld + o0, a + r0 * ld + o0, ld, nr,
                                og, bias, &zm if moments != NULL else NULL,
                                &am if moments != NULL else NULL)
    else:
        vp_forward_epilogue_f64(kind, p0, p1, z + r0 * ld + o0, a + r0 * ld + o0, ld, nr,
                                og, bias, &zm if moments != NULL else NULL,
                                &am if moments != NULL else NULL)


def conv_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] w,
                 const floating[::1] bias, floating[:, ::1] z, floating[:, ::1] a,
                 double[:, :, ::1] moments, floating[:, ::1] buf, geometry, out_h, out_w,
                 c0, o0, kind, p0, p1, tile_rows, n_threads):
    """One group of a fused convolution, tile by tile (tile_rows patch rows each):
    z[:, o0:o0 + og] = patches(x, channels c0 ..) @ w + bias, a = phi(z) there, and per
    tile the shift, sum and sum of squares of z and a (moments (6, n_tiles, og), or
    (0, 0, 0) for none). x (batch, H, W, C); w (k_h k_w cg, og); bias (og,) or (0,);
    z and a (batch out_h out_w, C_out); buf (>= n_threads, >= tile_rows k_h k_w cg): each
    thread's patch rows (no patch matrix is ever stored whole; unused for a 1x1 kernel
    with stride 1 and no padding, whose patches are x's rows)."""
    cdef vp_geom g
    cdef int threads = _threads(n_threads)
    cdef int c_kind = kind, c_tile = tile_rows, og = w.shape[1], taps = w.shape[0]
    cdef double c_p0 = p0, c_p1 = p1
    cdef ptrdiff_t cg, rows, plane, n_tiles, t, start = c0, ostart = o0
    cdef bint direct, stats = moments.shape[0] != 0
    _geom(&g, geometry, x.shape, out_h, out_w)
    if c_kind < 0 or c_kind >= VP_N_ACTIVATIONS or c_tile < 1 or og < 1:
        raise ValueError(f"kind {kind}, tile_rows {tile_rows} or w {w.shape[1]} out of range")
    cg = taps // (g.k_h * g.k_w)
    if cg * g.k_h * g.k_w != taps:
        raise ValueError(f"w must have k_h k_w cg rows, got {taps}")
    _channels(&g, c0, cg)
    rows = g.batch * g.out_h * g.out_w
    if not (z.shape[0] == a.shape[0] == rows and z.shape[1] == a.shape[1] >= ostart + og
            and ostart >= 0):
        raise ValueError(f"z and a must have shape ({rows}, >= {o0} + {og}), got "
                         f"{(z.shape[0], z.shape[1])}, {(a.shape[0], a.shape[1])}")
    if bias.shape[0] not in (0, og):
        raise ValueError(f"bias must have shape ({og},) or (0,), got ({bias.shape[0]},)")
    n_tiles = (rows + c_tile - 1) // c_tile
    if stats and (moments.shape[0] != 6 or moments.shape[1] != n_tiles
                  or moments.shape[2] != og):
        raise ValueError(f"moments must have shape (6, {n_tiles}, {og}) or (0, 0, 0)")
    if n_tiles > (1 << 31) - 1 or z.shape[1] > (1 << 31) - 1:
        raise ValueError("more than 2**31 - 1 tiles or channels")
    direct = g.k_h == 1 and g.k_w == 1 and g.s_h == 1 and g.s_w == 1 and g.pad_h == 0 \
        and g.pad_w == 0 and g.out_h == g.in_h and g.out_w == g.in_w
    threads = <int>min(<ptrdiff_t>threads, n_tiles)
    if not direct and (buf.shape[0] < threads or buf.shape[1] < <ptrdiff_t>c_tile * taps):
        raise ValueError(f"buf must have shape (>= {threads}, >= {c_tile * taps})")
    arrays = [np.asarray(x), np.asarray(w), np.asarray(bias), np.asarray(z), np.asarray(a),
              np.asarray(moments), np.asarray(buf)]
    for i in range(3, 7):
        for j in range(7):
            if i != j and arrays[i].size and arrays[j].size \
                    and np.may_share_memory(arrays[i], arrays[j]):
                raise ValueError("z, a, moments and buf must not overlap each other or "
                                 "the inputs")
    if rows == 0:
        return
    plane = n_tiles * og
    for t in prange(n_tiles, nogil=True, num_threads=threads, schedule="static"):
        _forward_tile(&x[0, 0, 0, 0], &w[0, 0], &bias[0] if og == bias.shape[0] else NULL,
                      &z[0, 0], &a[0, 0], &moments[0, 0, 0] if stats else NULL,
                      NULL if direct else &buf[threadid(), 0], &g, start, cg, ostart, og,
                      z.shape[1], taps, c_tile, rows, t, plane, direct, c_kind, c_p0, c_p1)
