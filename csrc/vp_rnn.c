/* Elman recurrent layer, forward and backward through time: see vp_rnn.h.
 *
 * The file includes itself once per dtype: the part under VP_RNN_T is the body, written
 * once for T = float and T = double (F(name) appends _f32 / _f64), as vp_conv.c does.
 *
 * Why the recurrence is tiled over the batch: row r of h_t depends on row r of h_{t-1}
 * only, so a batch tile runs all T steps on one thread with no barrier between steps;
 * its W_h (H x H) stays in that core's cache for the whole loop. The whole-sequence
 * GEMMs (input projection, dX, dW_x, dW_h) have the T B rows as one dimension: there a
 * few large calls beat T small ones.
 */
#ifndef VP_RNN_T

#include "vp_rnn.h"

#include <string.h>

#include "vp_activations.h"

#define VP_CAT(a, b) a##b
#define VP_XCAT(a, b) VP_CAT(a, b)
#define F(name) VP_XCAT(name, VP_RNN_SUFFIX)

static inline ptrdiff_t vp_rnn_min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }
static inline ptrdiff_t vp_rnn_ceil(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }

int vp_rnn_built_with_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define VP_RNN_T float
#define VP_RNN_SUFFIX _f32
#define VP_RNN_GEMM vp_sgemm_fn
#define VP_RNN_FWD_EPI vp_forward_epilogue_f32
#define VP_RNN_BWD_EPI vp_backward_epilogue_f32
#define VP_RNN_COLSUM vp_column_sums_f32
#include "vp_rnn.c"
#undef VP_RNN_T
#undef VP_RNN_SUFFIX
#undef VP_RNN_GEMM
#undef VP_RNN_FWD_EPI
#undef VP_RNN_BWD_EPI
#undef VP_RNN_COLSUM

#define VP_RNN_T double
#define VP_RNN_SUFFIX _f64
#define VP_RNN_GEMM vp_dgemm_fn
#define VP_RNN_FWD_EPI vp_forward_epilogue_f64
#define VP_RNN_BWD_EPI vp_backward_epilogue_f64
#define VP_RNN_COLSUM vp_column_sums_f64
#include "vp_rnn.c"
#undef VP_RNN_T
#undef VP_RNN_SUFFIX
#undef VP_RNN_GEMM
#undef VP_RNN_FWD_EPI
#undef VP_RNN_BWD_EPI
#undef VP_RNN_COLSUM

#else /* ---------------------------------------------------- the body, per dtype T */
#define T VP_RNN_T

/* Row-major C (m x n, ldc) = op(A) op(B) + beta C, op(A) m x k, op(B) k x n, ta / tb 'N'
 * or 'T' as the row-major matrices are stored. Column-major BLAS sees each row-major
 * matrix transposed, so it computes C^T = op(B)^T op(A)^T: the operands swap, the flags
 * stay. k == 0 is done here (the product is 0; some BLAS leave C untouched). */
static void F(gemm_rm)(VP_RNN_GEMM gemm, char ta, char tb, ptrdiff_t m, ptrdiff_t n,
                       ptrdiff_t k, const T *a, ptrdiff_t lda, const T *b, ptrdiff_t ldb,
                       T beta, T *c, ptrdiff_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        if (beta == 0)
            for (ptrdiff_t i = 0; i < m; i++) memset(c + i * ldc, 0, (size_t)n * sizeof(T));
        return;
    }
    int im = (int)m, in = (int)n, ik = (int)k, ia = (int)lda, ib = (int)ldb, ic = (int)ldc;
    T one = 1;
    gemm(&tb, &ta, &in, &im, &ik, &one, (T *)b, &ib, (T *)a, &ia, &beta, c, &ic);
}

/* ------------------------------------------------------------------- forward */
/* Projection tile k of the (T B, H) grid: z[rows, cols] = X[rows] W_x[:, cols] + b[cols]. */
static void F(proj_tile)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *x, const T *w_x,
                         const T *b, T *z, ptrdiff_t k)
{
    const ptrdiff_t H = d->hidden, rows = d->steps * d->batch;
    const ptrdiff_t n_ct = vp_rnn_ceil(H, d->proj.cols);
    const ptrdiff_t r0 = (k / n_ct) * d->proj.rows, c0 = (k % n_ct) * d->proj.cols;
    const ptrdiff_t nr = vp_rnn_min(d->proj.rows, rows - r0);
    const ptrdiff_t nc = vp_rnn_min(d->proj.cols, H - c0);
    T *out = z + r0 * H + c0;
    F(gemm_rm)(gemm, 'N', 'N', nr, nc, d->n_in, x + r0 * d->n_in, d->n_in, w_x + c0, H, 0,
               out, H);
    if (b == NULL)
        return;
    for (ptrdiff_t r = 0; r < nr; r++) {
        T *restrict row = out + r * H;
        const T *restrict bias = b + c0;
#pragma omp simd
        for (ptrdiff_t j = 0; j < nc; j++) row[j] += bias[j];
    }
}

/* Batch tile i through all T steps: z_t += h_{t-1} W_h, h_t = phi(z_t), in place. */
static void F(forward_tile)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *w_h,
                            const T *h0, T *z, T *h, ptrdiff_t i, int kind, double p0,
                            double p1)
{
    const ptrdiff_t B = d->batch, H = d->hidden, r0 = i * d->batch_tile;
    const ptrdiff_t nr = vp_rnn_min(d->batch_tile, B - r0), step = B * H;
    const T *prev = h0 != NULL ? h0 + r0 * H : NULL;
    for (ptrdiff_t t = 0; t < d->steps; t++) {
        T *zt = z + t * step + r0 * H, *ht = h + t * step + r0 * H;
        if (prev != NULL)
            F(gemm_rm)(gemm, 'N', 'N', nr, H, H, prev, H, w_h, H, 1, zt, H);
        VP_RNN_FWD_EPI(kind, p0, p1, zt, ht, H, nr, H, NULL, NULL, NULL);
        prev = ht;
    }
}

void F(vp_rnn_forward)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *x, const T *w_x,
                       const T *w_h, const T *b, const T *h0, T *z, T *h, int kind,
                       double p0, double p1, int n_threads)
{
    const ptrdiff_t n_proj = vp_rnn_ceil(d->steps * d->batch, d->proj.rows)
                             * vp_rnn_ceil(d->hidden, d->proj.cols);
    const ptrdiff_t n_tiles = vp_rnn_ceil(d->batch, d->batch_tile);
    (void)n_threads;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (ptrdiff_t k = 0; k < n_proj; k++) F(proj_tile)(gemm, d, x, w_x, b, z, k);
        /* the implicit barrier: a batch tile reads the projections of every step */
#pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < n_tiles; i++)
            F(forward_tile)(gemm, d, w_h, h0, z, h, i, kind, p0, p1);
    }
}

/* ------------------------------------------------------------------ backward */
/* Batch tile i from t = T-1 down to 0; its rows of grad_h0 hold the incoming gradient
 * grad_h_t + dz_{t+1} W_h^T until the end, when they get dz_0 W_h^T. */
static void F(backward_tile)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *w_h,
                             const T *z, const T *grad_h, T *grad_z, T *grad_h0,
                             ptrdiff_t i, int kind, double p0, double p1)
{
    const ptrdiff_t B = d->batch, H = d->hidden, r0 = i * d->batch_tile;
    const ptrdiff_t nr = vp_rnn_min(d->batch_tile, B - r0), step = B * H, n = nr * H;
    T *g = grad_h0 + r0 * H;
    for (ptrdiff_t t = d->steps - 1; t >= 0; t--) {
        const ptrdiff_t off = t * step + r0 * H;
        const T *incoming = grad_h + off;
        if (t < d->steps - 1) {
            memcpy(g, grad_h + off, (size_t)n * sizeof(T));
            F(gemm_rm)(gemm, 'N', 'T', nr, H, H, grad_z + off + step, H, w_h, H, 1, g, H);
            incoming = g;
        }
        VP_RNN_BWD_EPI(kind, p0, p1, z + off, incoming, grad_z + off, n);
    }
    F(gemm_rm)(gemm, 'N', 'T', nr, H, H, grad_z + r0 * H, H, w_h, H, 0, g, H);
}

/* Task k of the whole-sequence phase: a tile of dX, dW_x or dW_h, or a bias block. */
static void F(sequence_task)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *x,
                             const T *w_x, const T *h, const T *h0, const T *grad_z,
                             T *grad_x, T *grad_w_x, T *grad_w_h, double *bias_partials,
                             ptrdiff_t k)
{
    const ptrdiff_t B = d->batch, Fi = d->n_in, H = d->hidden, rows = d->steps * B;
    const ptrdiff_t x_ct = vp_rnn_ceil(Fi, d->grad_x.cols);
    const ptrdiff_t n_x = vp_rnn_ceil(rows, d->grad_x.rows) * x_ct;
    const ptrdiff_t wx_ct = vp_rnn_ceil(H, d->grad_w_x.cols);
    const ptrdiff_t n_wx = vp_rnn_ceil(Fi, d->grad_w_x.rows) * wx_ct;
    const ptrdiff_t wh_ct = vp_rnn_ceil(H, d->grad_w_h.cols);
    const ptrdiff_t n_wh = vp_rnn_ceil(H, d->grad_w_h.rows) * wh_ct;
    if (k < n_x) { /* dX[r0:, c0:] = dZ[r0:] W_x[c0:]^T */
        const ptrdiff_t r0 = (k / x_ct) * d->grad_x.rows, c0 = (k % x_ct) * d->grad_x.cols;
        F(gemm_rm)(gemm, 'N', 'T', vp_rnn_min(d->grad_x.rows, rows - r0),
                   vp_rnn_min(d->grad_x.cols, Fi - c0), H, grad_z + r0 * H, H,
                   w_x + c0 * H, H, 0, grad_x + r0 * Fi + c0, Fi);
        return;
    }
    k -= n_x;
    if (k < n_wx) { /* dW_x[i0:, c0:] = X[:, i0:]^T dZ[:, c0:], all T B rows inner */
        const ptrdiff_t i0 = (k / wx_ct) * d->grad_w_x.rows;
        const ptrdiff_t c0 = (k % wx_ct) * d->grad_w_x.cols;
        F(gemm_rm)(gemm, 'T', 'N', vp_rnn_min(d->grad_w_x.rows, Fi - i0),
                   vp_rnn_min(d->grad_w_x.cols, H - c0), rows, x + i0, Fi, grad_z + c0, H,
                   0, grad_w_x + i0 * H + c0, H);
        return;
    }
    k -= n_wx;
    if (k < n_wh) { /* dW_h[i0:, c0:] = h0^T dz_0 + h[0:T-1]^T dZ[1:T], steps in order */
        const ptrdiff_t i0 = (k / wh_ct) * d->grad_w_h.rows;
        const ptrdiff_t c0 = (k % wh_ct) * d->grad_w_h.cols;
        const ptrdiff_t m = vp_rnn_min(d->grad_w_h.rows, H - i0);
        const ptrdiff_t n = vp_rnn_min(d->grad_w_h.cols, H - c0);
        T *out = grad_w_h + i0 * H + c0;
        T beta = 0;
        if (h0 != NULL) {
            F(gemm_rm)(gemm, 'T', 'N', m, n, B, h0 + i0, H, grad_z + c0, H, 0, out, H);
            beta = 1;
        }
        F(gemm_rm)(gemm, 'T', 'N', m, n, rows - B, h + i0, H, grad_z + B * H + c0, H, beta,
                   out, H);
        return;
    }
    k -= n_wh; /* bias block k: column sums of its rows of dZ, in double, rows in order */
    {
        const ptrdiff_t r0 = k * d->bias_block;
        VP_RNN_COLSUM(grad_z + r0 * H, H, vp_rnn_min(d->bias_block, rows - r0), H,
                      bias_partials + k * H);
    }
}

void F(vp_rnn_backward)(VP_RNN_GEMM gemm, const vp_rnn_dims *d, const T *x, const T *w_x,
                        const T *w_h, const T *z, const T *h, const T *grad_h, const T *h0,
                        T *grad_z, T *grad_x, T *grad_h0, T *grad_w_x, T *grad_w_h,
                        double *bias_partials, int kind, double p0, double p1,
                        int n_threads)
{
    const ptrdiff_t B = d->batch, Fi = d->n_in, H = d->hidden, rows = d->steps * B;
    const ptrdiff_t n_tiles = vp_rnn_ceil(B, d->batch_tile);
    const ptrdiff_t n_tasks =
        vp_rnn_ceil(rows, d->grad_x.rows) * vp_rnn_ceil(Fi, d->grad_x.cols)
        + vp_rnn_ceil(Fi, d->grad_w_x.rows) * vp_rnn_ceil(H, d->grad_w_x.cols)
        + vp_rnn_ceil(H, d->grad_w_h.rows) * vp_rnn_ceil(H, d->grad_w_h.cols)
        + vp_rnn_ceil(rows, d->bias_block);
    (void)n_threads;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < n_tiles; i++)
            F(backward_tile)(gemm, d, w_h, z, grad_h, grad_z, grad_h0, i, kind, p0, p1);
        /* the implicit barrier: the sequence GEMMs read every step's dz */
#pragma omp for schedule(dynamic)
        for (ptrdiff_t k = 0; k < n_tasks; k++)
            F(sequence_task)(gemm, d, x, w_x, h, h0, grad_z, grad_x, grad_w_x, grad_w_h,
                             bias_partials, k);
    }
}

#undef T
#endif /* VP_RNN_T */
