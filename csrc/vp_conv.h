/* Convolution and pooling helpers of varprop._conv: im2col, col2im and the pooling
 * loops over channels-last images. Plain C (OpenMP when built with it), no Python API.
 *
 * Every image is 2-D here, (batch, in_h, in_w, channels) row-major (a 1-D signal is an
 * image of height 1). Outputs never depend on the thread count: each output element is
 * written by one thread, and every sum runs in a fixed order (the window's row-major
 * order), whatever the split of the work.
 *
 * Memory safety: the loops read only inside the image (an index outside it is padding),
 * so any geometry with strides, dilations and kernel sizes >= 1 and pads >= 0 stays in
 * bounds, given buffers of the documented sizes (the Cython layer checks them). */
#ifndef VP_CONV_H
#define VP_CONV_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    ptrdiff_t batch, in_h, in_w, channels; /* the input image(s) */
    ptrdiff_t out_h, out_w;                /* the output grid */
    ptrdiff_t k_h, k_w;                    /* kernel / pool window */
    ptrdiff_t s_h, s_w;                    /* strides */
    ptrdiff_t d_h, d_w;                    /* dilations (1 for pooling) */
    ptrdiff_t pad_h, pad_w;                /* padding before (top, left) */
} vp_geom;

/* cols[(b, oh, ow), (kh, kw, c)] = x[b, oh s_h - pad_h + kh d_h, ow s_w - pad_w + kw d_w,
 * c0 + c] (0 outside the image), c < cg: cols is (batch out_h out_w, k_h k_w cg). */
void vp_im2col_f32(const float *x, float *cols, const vp_geom *g, ptrdiff_t c0,
                   ptrdiff_t cg, int n_threads);
void vp_im2col_f64(const double *x, double *cols, const vp_geom *g, ptrdiff_t c0,
                   ptrdiff_t cg, int n_threads);

/* Rows r0 .. r0 + nrows - 1 of that matrix (nrows x k_h k_w cg), on this thread. */
void vp_im2col_rows_f32(const float *x, float *cols, const vp_geom *g, ptrdiff_t c0,
                        ptrdiff_t cg, ptrdiff_t r0, ptrdiff_t nrows);
void vp_im2col_rows_f64(const double *x, double *cols, const vp_geom *g, ptrdiff_t c0,
                        ptrdiff_t cg, ptrdiff_t r0, ptrdiff_t nrows);

/* The adjoint of im2col: gx[b, ih, iw, c0 + c] = the sum of every cols entry that im2col
 * copied from there, taps added in (kh, kw) order (in T). Written (not added):
 * channels outside [c0, c0 + cg) are left as they are. */
void vp_col2im_f32(const float *cols, float *gx, const vp_geom *g, ptrdiff_t c0,
                   ptrdiff_t cg, int n_threads);
void vp_col2im_f64(const double *cols, double *gx, const vp_geom *g, ptrdiff_t c0,
                   ptrdiff_t cg, int n_threads);

/* y[b, oh, ow, c]: the max of the window (padding ignored, as -inf), argmax its flat
 * position ih in_w + iw: PyTorch's CPU rule (start at the first in-bounds position
 * with -inf, take a value if it is > the max so far or NaN). */
void vp_max_pool_forward_f32(const float *x, float *y, int64_t *argmax, const vp_geom *g,
                             int n_threads);
void vp_max_pool_forward_f64(const double *x, double *y, int64_t *argmax,
                             const vp_geom *g, int n_threads);

/* gx = 0, then gx[b, argmax[b, o, c], c] += gy[b, o, c] over the outputs o in order.
 * Entries of argmax outside [0, in_h in_w) are skipped; returns their number. */
ptrdiff_t vp_max_pool_backward_f32(const float *gy, const int64_t *argmax, float *gx,
                                   const vp_geom *g, int n_threads);
ptrdiff_t vp_max_pool_backward_f64(const double *gy, const int64_t *argmax, double *gx,
                                   const vp_geom *g, int n_threads);

/* y = the window's sum (double, row-major order) / its count: k_h k_w if include_pad,
 * else the in-bounds entries. Windows end within the padded image, as without ceil
 * mode. */
void vp_avg_pool_forward_f32(const float *x, float *y, const vp_geom *g, int include_pad,
                             int n_threads);
void vp_avg_pool_forward_f64(const double *x, double *y, const vp_geom *g,
                             int include_pad, int n_threads);

/* gx[b, ih, iw, c] = sum over the windows (oh, ow) holding it, in order, of
 * gy[b, oh, ow, c] / count(oh, ow), in double. */
void vp_avg_pool_backward_f32(const float *gy, float *gx, const vp_geom *g,
                              int include_pad, int n_threads);
void vp_avg_pool_backward_f64(const double *gy, double *gx, const vp_geom *g,
                              int include_pad, int n_threads);

int vp_conv_built_with_openmp(void);

#endif /* VP_CONV_H */
