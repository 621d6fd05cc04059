/* Convolution and pooling loops: see vp_conv.h.
 *
 * The file includes itself once per dtype: the part under VP_CONV_T is the body of the
 * functions, written once for T = float and T = double (F(name) appends _f32 / _f64).
 * im2col copies; col2im adds each tap in T, taps in (kh, kw) order; the pooling sums run
 * over blocks of VP_CBLOCK channels with double accumulators on the stack (the block split
 * never changes a sum: each channel is summed on its own). Every loop is split over whole
 * output elements (rows of the output, or of the input for the adjoints), so no two
 * threads ever add into one element.
 */
#ifndef VP_CONV_T

#include "vp_conv.h"

#include <math.h>
#include <string.h>

#define VP_CBLOCK 64

#define VP_CAT(a, b) a##b
#define VP_XCAT(a, b) VP_CAT(a, b)
#define F(name) VP_XCAT(name, VP_CONV_SUFFIX)

/* Keep short copy loops as loops: a call to memmove per few values is slower. */
#if defined(__GNUC__) && !defined(__clang__)
#define VP_NO_LIBCALLS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define VP_NO_LIBCALLS
#endif

static inline ptrdiff_t vp_min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }
static inline ptrdiff_t vp_max(ptrdiff_t a, ptrdiff_t b) { return a > b ? a : b; }

/* The first output index o >= 0 whose window [o s - pad, o s - pad + k) holds i. */
static inline ptrdiff_t vp_first_window(ptrdiff_t i, ptrdiff_t pad, ptrdiff_t k, ptrdiff_t s)
{
    ptrdiff_t lo = i + pad - k + 1;
    return lo <= 0 ? 0 : (lo + s - 1) / s;
}

int vp_conv_built_with_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define VP_CONV_T float
#define VP_CONV_SUFFIX _f32
#include "vp_conv.c"
#undef VP_CONV_T
#undef VP_CONV_SUFFIX

#define VP_CONV_T double
#define VP_CONV_SUFFIX _f64
#include "vp_conv.c"
#undef VP_CONV_T
#undef VP_CONV_SUFFIX

#else /* ---------------------------------------------------- the body, per dtype T */
#define T VP_CONV_T

/* dst[0:n] = src[0:n]: short runs (a few channels) inline, long ones by memcpy */
VP_NO_LIBCALLS static inline void F(vp_copy)(T *restrict dst, const T *restrict src, ptrdiff_t n)
{
    if (n > 32) {
        memcpy(dst, src, (size_t)n * sizeof(T));
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = src[i];
}
#define vp_copy F(vp_copy)

VP_NO_LIBCALLS static inline void F(vp_zero)(T *restrict dst, ptrdiff_t n)
{
    if (n > 32) {
        memset(dst, 0, (size_t)n * sizeof(T));
        return;
    }
    for (ptrdiff_t i = 0; i < n; i++) dst[i] = 0;
}
#define vp_zero F(vp_zero)

VP_NO_LIBCALLS void F(vp_im2col_rows)(const T *x, T *cols, const vp_geom *g,
                                      ptrdiff_t c0, ptrdiff_t cg, ptrdiff_t r0,
                                      ptrdiff_t nrows)
{
    /* the geometry in locals: the stores to cols would make the compiler reload it */
    const ptrdiff_t C = g->channels, in_h = g->in_h, in_w = g->in_w;
    const ptrdiff_t out_h = g->out_h, out_w = g->out_w, k_h = g->k_h, k_w = g->k_w;
    const ptrdiff_t s_h = g->s_h, s_w = g->s_w, d_h = g->d_h, d_w = g->d_w;
    const ptrdiff_t run = k_w * cg, per_image = out_h * out_w, image = in_h * in_w * C;
    const int whole = cg == C && d_w == 1; /* a kernel row is one span of k_w C values */
    T *restrict out = cols;
    ptrdiff_t b = r0 / per_image, oh = (r0 % per_image) / out_w, ow = r0 % out_w;
    for (ptrdiff_t r = 0; r < nrows; r++, ow++) {
        if (ow == out_w) { /* the next output row (and image): no division per row */
            ow = 0;
            if (++oh == out_h) {
                oh = 0;
                b++;
            }
        }
        const T *img = x + b * image + c0;
        const ptrdiff_t w0 = ow * s_w - g->pad_w, h0 = oh * s_h - g->pad_h;
        const int span = whole && w0 >= 0 && w0 + k_w <= in_w;
        for (ptrdiff_t kh = 0; kh < k_h; kh++, out += run) {
            const ptrdiff_t ih = h0 + kh * d_h;
            if (ih < 0 || ih >= in_h) {
                vp_zero(out, run);
                continue;
            }
            const T *line = img + ih * in_w * C;
            if (span) {
                vp_copy(out, line + w0 * C, run);
                continue;
            }
            for (ptrdiff_t kw = 0; kw < k_w; kw++) {
                const ptrdiff_t iw = w0 + kw * d_w;
                if (iw >= 0 && iw < in_w)
                    vp_copy(out + kw * cg, line + iw * C, cg);
                else
                    vp_zero(out + kw * cg, cg);
            }
        }
    }
}

void F(vp_im2col)(const T *x, T *cols, const vp_geom *g, ptrdiff_t c0, ptrdiff_t cg,
                  int n_threads)
{
    const ptrdiff_t rows = g->batch * g->out_h * g->out_w, block = 64;
    const ptrdiff_t width = g->k_h * g->k_w * cg, blocks = (rows + block - 1) / block;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (ptrdiff_t t = 0; t < blocks; t++)
        F(vp_im2col_rows)(x, cols + t * block * width, g, c0, cg, t * block,
                          vp_min(block, rows - t * block));
}

void F(vp_col2im)(const T *cols, T *gx, const vp_geom *g, ptrdiff_t c0, ptrdiff_t cg,
                  int n_threads)
{
    const ptrdiff_t C = g->channels, in_h = g->in_h, in_w = g->in_w;
    const ptrdiff_t out_h = g->out_h, out_w = g->out_w, k_h = g->k_h, k_w = g->k_w;
    const ptrdiff_t s_h = g->s_h, s_w = g->s_w, d_h = g->d_h, d_w = g->d_w;
    const ptrdiff_t pad_h = g->pad_h, pad_w = g->pad_w, width = k_h * k_w * cg;
    const ptrdiff_t rows = g->batch * in_h;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (ptrdiff_t r = 0; r < rows; r++) { /* one input row: whole output elements */
        const ptrdiff_t b = r / in_h, ih = r % in_h;
        T *row = gx + r * in_w * C + c0;
        for (ptrdiff_t iw = 0; iw < in_w; iw++)
            for (ptrdiff_t c = 0; c < cg; c++) row[iw * C + c] = 0;
        const T *src_b = cols + b * out_h * out_w * width;
        for (ptrdiff_t kh = 0; kh < k_h; kh++) { /* taps in (kh, kw) order */
            const ptrdiff_t th = ih + pad_h - kh * d_h;
            if (th < 0) break;
            if (th % s_h || th / s_h >= out_h) continue;
            const T *src_row = src_b + (th / s_h) * out_w * width + kh * k_w * cg;
            for (ptrdiff_t iw = 0; iw < in_w; iw++) {
                T *restrict dst = row + iw * C;
                for (ptrdiff_t kw = 0; kw < k_w; kw++) {
                    const ptrdiff_t tw = iw + pad_w - kw * d_w;
                    if (tw < 0) break;
                    const ptrdiff_t ow = s_w == 1 ? tw : tw / s_w;
                    if ((s_w != 1 && tw % s_w) || ow >= out_w) continue;
                    const T *restrict src = src_row + ow * width + kw * cg;
                    for (ptrdiff_t c = 0; c < cg; c++) dst[c] += src[c];
                }
            }
        }
    }
}

void F(vp_max_pool_forward)(const T *x, T *y, int64_t *argmax, const vp_geom *g,
                            int n_threads)
{
    const ptrdiff_t rows = g->batch * g->out_h, C = g->channels;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const ptrdiff_t b = r / g->out_h, oh = r % g->out_h;
        const T *img = x + b * g->in_h * g->in_w * C;
        const ptrdiff_t h0 = oh * g->s_h - g->pad_h;
        const ptrdiff_t hs = vp_max(h0, 0), he = vp_min(h0 + g->k_h, g->in_h);
        for (ptrdiff_t ow = 0; ow < g->out_w; ow++) {
            T *yo = y + (r * g->out_w + ow) * C;
            int64_t *ao = argmax + (r * g->out_w + ow) * C;
            const ptrdiff_t w0 = ow * g->s_w - g->pad_w;
            const ptrdiff_t ws = vp_max(w0, 0), we = vp_min(w0 + g->k_w, g->in_w);
            const int64_t first = (int64_t)(hs * g->in_w + ws);
            for (ptrdiff_t c = 0; c < C; c++) {
                yo[c] = (T)-INFINITY;
                ao[c] = first;
            }
            for (ptrdiff_t ih = hs; ih < he; ih++)
                for (ptrdiff_t iw = ws; iw < we; iw++) {
                    const int64_t idx = (int64_t)(ih * g->in_w + iw);
                    const T *xi = img + idx * C;
                    for (ptrdiff_t c = 0; c < C; c++) {
                        const T v = xi[c];
                        if (v > yo[c] || isnan(v)) {
                            yo[c] = v;
                            ao[c] = idx;
                        }
                    }
                }
        }
    }
}

ptrdiff_t F(vp_max_pool_backward)(const T *gy, const int64_t *argmax, T *gx,
                                  const vp_geom *g, int n_threads)
{
    const ptrdiff_t C = g->channels, pixels = g->in_h * g->in_w;
    const ptrdiff_t outs = g->out_h * g->out_w;
    const ptrdiff_t blocks = (C + VP_CBLOCK - 1) / VP_CBLOCK;
    const ptrdiff_t tasks = g->batch * blocks;
    ptrdiff_t bad = 0;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads) reduction(+ : bad)
    for (ptrdiff_t t = 0; t < tasks; t++) {
        const ptrdiff_t b = t / blocks, cs = (t % blocks) * VP_CBLOCK;
        const ptrdiff_t ce = vp_min(cs + VP_CBLOCK, C);
        T *img = gx + b * pixels * C;
        for (ptrdiff_t p = 0; p < pixels; p++)
            for (ptrdiff_t c = cs; c < ce; c++) img[p * C + c] = 0;
        for (ptrdiff_t o = 0; o < outs; o++) {
            const T *go = gy + (b * outs + o) * C;
            const int64_t *ao = argmax + (b * outs + o) * C;
            for (ptrdiff_t c = cs; c < ce; c++) {
                const int64_t k = ao[c];
                if (k < 0 || k >= pixels) {
                    bad++;
                    continue;
                }
                img[k * C + c] += go[c];
            }
        }
    }
    return bad;
}

void F(vp_avg_pool_forward)(const T *x, T *y, const vp_geom *g, int include_pad,
                            int n_threads)
{
    const ptrdiff_t rows = g->batch * g->out_h, C = g->channels;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const ptrdiff_t b = r / g->out_h, oh = r % g->out_h;
        const T *img = x + b * g->in_h * g->in_w * C;
        const ptrdiff_t h0 = oh * g->s_h - g->pad_h;
        const ptrdiff_t hs = vp_max(h0, 0), he = vp_min(h0 + g->k_h, g->in_h);
        for (ptrdiff_t ow = 0; ow < g->out_w; ow++) {
            T *yo = y + (r * g->out_w + ow) * C;
            const ptrdiff_t w0 = ow * g->s_w - g->pad_w;
            const ptrdiff_t ws = vp_max(w0, 0), we = vp_min(w0 + g->k_w, g->in_w);
            const double count = include_pad ? (double)(g->k_h * g->k_w)
                                             : (double)((he - hs) * (we - ws));
            for (ptrdiff_t cb = 0; cb < C; cb += VP_CBLOCK) {
                const ptrdiff_t n = vp_min(VP_CBLOCK, C - cb);
                double acc[VP_CBLOCK];
                for (ptrdiff_t c = 0; c < n; c++) acc[c] = 0.0;
                for (ptrdiff_t ih = hs; ih < he; ih++)
                    for (ptrdiff_t iw = ws; iw < we; iw++) {
                        const T *xi = img + (ih * g->in_w + iw) * C + cb;
                        for (ptrdiff_t c = 0; c < n; c++) acc[c] += (double)xi[c];
                    }
                for (ptrdiff_t c = 0; c < n; c++) yo[cb + c] = (T)(acc[c] / count);
            }
        }
    }
}

void F(vp_avg_pool_backward)(const T *gy, T *gx, const vp_geom *g, int include_pad,
                             int n_threads)
{
    const ptrdiff_t rows = g->batch * g->in_h, C = g->channels;
    (void)n_threads;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (ptrdiff_t r = 0; r < rows; r++) {
        const ptrdiff_t b = r / g->in_h, ih = r % g->in_h;
        const ptrdiff_t oh0 = vp_first_window(ih, g->pad_h, g->k_h, g->s_h);
        const ptrdiff_t oh1 = vp_min((ih + g->pad_h) / g->s_h + 1, g->out_h);
        for (ptrdiff_t iw = 0; iw < g->in_w; iw++) {
            T *dst = gx + (r * g->in_w + iw) * C;
            const ptrdiff_t ow0 = vp_first_window(iw, g->pad_w, g->k_w, g->s_w);
            const ptrdiff_t ow1 = vp_min((iw + g->pad_w) / g->s_w + 1, g->out_w);
            for (ptrdiff_t cb = 0; cb < C; cb += VP_CBLOCK) {
                const ptrdiff_t n = vp_min(VP_CBLOCK, C - cb);
                double acc[VP_CBLOCK];
                for (ptrdiff_t c = 0; c < n; c++) acc[c] = 0.0;
                for (ptrdiff_t oh = oh0; oh < oh1; oh++) {
                    const ptrdiff_t h0 = oh * g->s_h - g->pad_h;
                    const ptrdiff_t nh = vp_min(h0 + g->k_h, g->in_h) - vp_max(h0, 0);
                    for (ptrdiff_t ow = ow0; ow < ow1; ow++) {
                        const ptrdiff_t w0 = ow * g->s_w - g->pad_w;
                        const ptrdiff_t nw = vp_min(w0 + g->k_w, g->in_w) - vp_max(w0, 0);
                        const double count = include_pad ? (double)(g->k_h * g->k_w)
                                                         : (double)(nh * nw);
                        const T *go = gy + ((b * g->out_h + oh) * g->out_w + ow) * C + cb;
                        for (ptrdiff_t c = 0; c < n; c++) acc[c] += (double)go[c] / count;
                    }
                }
                for (ptrdiff_t c = 0; c < n; c++) dst[cb + c] = (T)acc[c];
            }
        }
    }
}

#undef vp_copy
#undef vp_zero
#undef T
#endif /* VP_CONV_T */
