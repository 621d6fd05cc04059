/* Gated recurrent cells (LSTM, GRU), forward and backward through time: see vp_gated.h.
 *
 * The file includes itself once per dtype, as vp_rnn.c does: the part under VP_GATED_T
 * is the body, written once for T = float and T = double (F(name) appends _f32 / _f64).
 *
 * The design is the Elman kernel's (vp_rnn.c, docs/kernels.md): the input projection of
 * every step is one tiled GEMM over the T B rows; the recurrence runs per batch tile
 * (row r of step t depends on row r of step t-1 only), all T steps on one thread with no
 * barrier, each step's GEMM followed at once by the gate nonlinearities and the cell
 * update on the rows it just wrote (still in cache). The gate activations are the dense
 * kernels' epilogues (vp_activations.c: float32 computed in double, one rounding), so
 * the cells inherit their accuracy and their instruction-set dispatch.
 */
#ifndef VP_GATED_T

#include "vp_gated.h"

#include <string.h>

#include "vp_activations.h"

#define VP_CAT(a, b) a##b
#define VP_XCAT(a, b) VP_CAT(a, b)
#define F(name) VP_XCAT(name, VP_GATED_SUFFIX)

static inline ptrdiff_t vp_gated_min(ptrdiff_t a, ptrdiff_t b) { return a < b ? a : b; }
static inline ptrdiff_t vp_gated_ceil(ptrdiff_t a, ptrdiff_t b) { return (a + b - 1) / b; }

int vp_gated_built_with_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

#define VP_GATED_T float
#define VP_GATED_SUFFIX _f32
#define VP_GATED_GEMM vp_sgemm_fn
#define VP_GATED_EPI vp_forward_epilogue_f32
#define VP_GATED_APPLY vp_activation_apply_f32
#define VP_GATED_COLSUM vp_column_sums_f32
#include "vp_gated.c"
#undef VP_GATED_T
#undef VP_GATED_SUFFIX
#undef VP_GATED_GEMM
#undef VP_GATED_EPI
#undef VP_GATED_APPLY
#undef VP_GATED_COLSUM

#define VP_GATED_T double
#define VP_GATED_SUFFIX _f64
#define VP_GATED_GEMM vp_dgemm_fn
#define VP_GATED_EPI vp_forward_epilogue_f64
#define VP_GATED_APPLY vp_activation_apply_f64
#define VP_GATED_COLSUM vp_column_sums_f64
#include "vp_gated.c"
#undef VP_GATED_T
#undef VP_GATED_SUFFIX
#undef VP_GATED_GEMM
#undef VP_GATED_EPI
#undef VP_GATED_APPLY
#undef VP_GATED_COLSUM

#else /* ---------------------------------------------------- the body, per dtype T */
#define T VP_GATED_T

/* Row-major C (m x n, ldc) = op(A) op(B) + beta C (vp_rnn.c's helper: column-major BLAS
 * sees each row-major matrix transposed, so the operands swap and the flags stay; k == 0
 * is done here since some BLAS leave C untouched then). */
static void F(ggemm)(VP_GATED_GEMM gemm, char ta, char tb, ptrdiff_t m, ptrdiff_t n,
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
/* Projection tile k of the (T B, G H) grid: pre[rows, cols] = X[rows] W_x[:, cols] + b_x. */
static void F(gproj_tile)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *x,
                          const T *w_x, const T *b_x, T *pre, ptrdiff_t k)
{
    const ptrdiff_t GH = d->gates * d->hidden, rows = d->steps * d->batch;
    const ptrdiff_t n_ct = vp_gated_ceil(GH, d->proj.cols);
    const ptrdiff_t r0 = (k / n_ct) * d->proj.rows, c0 = (k % n_ct) * d->proj.cols;
    const ptrdiff_t nr = vp_gated_min(d->proj.rows, rows - r0);
    const ptrdiff_t nc = vp_gated_min(d->proj.cols, GH - c0);
    T *out = pre + r0 * GH + c0;
    F(ggemm)(gemm, 'N', 'N', nr, nc, d->n_in, x + r0 * d->n_in, d->n_in, w_x + c0, GH, 0,
             out, GH);
    if (b_x == NULL)
        return;
    for (ptrdiff_t r = 0; r < nr; r++) {
        T *restrict row = out + r * GH;
        const T *restrict bias = b_x + c0;
#pragma omp simd
        for (ptrdiff_t j = 0; j < nc; j++) row[j] += bias[j];
    }
}

/* One LSTM step of a batch tile (nr rows at pre_t, gates_t, c_t, h_t): the recurrent GEMM
 * into the projection, the gates, the cell and the state. */
static void F(lstm_step)(VP_GATED_GEMM gemm, ptrdiff_t nr, ptrdiff_t H, const T *w_h,
                         const T *b_h, const T *prev_h, const T *prev_c, T *pre_t,
                         T *gates_t, T *c_t, T *h_t)
{
    const ptrdiff_t GH = 4 * H;
    if (prev_h != NULL)
        F(ggemm)(gemm, 'N', 'N', nr, GH, H, prev_h, H, w_h, GH, 1, pre_t, GH);
    VP_GATED_EPI(VP_SIGMOID, 0, 0, pre_t, gates_t, GH, nr, 2 * H, b_h, NULL, NULL);
    VP_GATED_EPI(VP_TANH, 0, 0, pre_t + 2 * H, gates_t + 2 * H, GH, nr, H,
                 b_h != NULL ? b_h + 2 * H : NULL, NULL, NULL);
    VP_GATED_EPI(VP_SIGMOID, 0, 0, pre_t + 3 * H, gates_t + 3 * H, GH, nr, H,
                 b_h != NULL ? b_h + 3 * H : NULL, NULL, NULL);
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *restrict g = gates_t + r * GH;
        T *restrict cr = c_t + r * H;
        if (prev_c != NULL) {
            const T *restrict cp = prev_c + r * H;
#pragma omp simd
            for (ptrdiff_t j = 0; j < H; j++) cr[j] = g[H + j] * cp[j] + g[j] * g[2 * H + j];
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < H; j++) cr[j] = g[j] * g[2 * H + j];
        }
    }
    VP_GATED_EPI(VP_TANH, 0, 0, c_t, h_t, H, nr, H, NULL, NULL, NULL);
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *restrict o = gates_t + r * GH + 3 * H;
        T *restrict hr = h_t + r * H;
#pragma omp simd
        for (ptrdiff_t j = 0; j < H; j++) hr[j] = o[j] * hr[j];
    }
}

/* One GRU step of a batch tile: the recurrent GEMMs (z, r into the projection; n into
 * s_t, kept apart since the reset gate multiplies it), the gates, the candidate, h_t. */
static void F(gru_step)(VP_GATED_GEMM gemm, ptrdiff_t nr, ptrdiff_t H, const T *w_h,
                        const T *b_h, const T *prev_h, T *pre_t, T *gates_t, T *s_t,
                        T *h_t)
{
    const ptrdiff_t GH = 3 * H;
    if (prev_h != NULL) {
        F(ggemm)(gemm, 'N', 'N', nr, 2 * H, H, prev_h, H, w_h, GH, 1, pre_t, GH);
        F(ggemm)(gemm, 'N', 'N', nr, H, H, prev_h, H, w_h + 2 * H, GH, 0, s_t, H);
    } else {
        memset(s_t, 0, (size_t)(nr * H) * sizeof(T));
    }
    VP_GATED_EPI(VP_SIGMOID, 0, 0, pre_t, gates_t, GH, nr, 2 * H, b_h, NULL, NULL);
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *restrict rg = gates_t + r * GH + H;
        T *restrict sr = s_t + r * H;
        T *restrict pn = pre_t + r * GH + 2 * H;
        if (b_h != NULL) {
            const T *restrict bn = b_h + 2 * H;
#pragma omp simd
            for (ptrdiff_t j = 0; j < H; j++) sr[j] += bn[j];
        }
#pragma omp simd
        for (ptrdiff_t j = 0; j < H; j++) pn[j] += rg[j] * sr[j];
    }
    VP_GATED_EPI(VP_TANH, 0, 0, pre_t + 2 * H, gates_t + 2 * H, GH, nr, H, NULL, NULL,
                 NULL);
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *restrict g = gates_t + r * GH;
        T *restrict hr = h_t + r * H;
        if (prev_h != NULL) {
            const T *restrict hp = prev_h + r * H;
#pragma omp simd
            for (ptrdiff_t j = 0; j < H; j++)
                hr[j] = g[j] * hp[j] + (1 - g[j]) * g[2 * H + j];
        } else {
#pragma omp simd
            for (ptrdiff_t j = 0; j < H; j++) hr[j] = (1 - g[j]) * g[2 * H + j];
        }
    }
}

/* Batch tile i through all T steps. */
static void F(gforward_tile)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *w_h,
                             const T *b_h, const T *h0, const T *c0, T *pre, T *gates,
                             T *h, T *c, T *s, ptrdiff_t i)
{
    const ptrdiff_t B = d->batch, H = d->hidden, GH = d->gates * H;
    const ptrdiff_t r0 = i * d->batch_tile, nr = vp_gated_min(d->batch_tile, B - r0);
    const ptrdiff_t step = B * H, gstep = B * GH;
    const T *prev_h = h0 != NULL ? h0 + r0 * H : NULL;
    const T *prev_c = c0 != NULL ? c0 + r0 * H : NULL;
    for (ptrdiff_t t = 0; t < d->steps; t++) {
        T *pre_t = pre + t * gstep + r0 * GH, *gates_t = gates + t * gstep + r0 * GH;
        T *h_t = h + t * step + r0 * H;
        if (d->cell == VP_CELL_LSTM) {
            T *c_t = c + t * step + r0 * H;
            F(lstm_step)(gemm, nr, H, w_h, b_h, prev_h, prev_c, pre_t, gates_t, c_t, h_t);
            prev_c = c_t;
        } else {
            F(gru_step)(gemm, nr, H, w_h, b_h, prev_h, pre_t, gates_t, s + t * step + r0 * H,
                        h_t);
        }
        prev_h = h_t;
    }
}

void F(vp_gated_forward)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *x,
                         const T *w_x, const T *w_h, const T *b_x, const T *b_h,
                         const T *h0, const T *c0, T *pre, T *gates, T *h, T *c, T *s,
                         int n_threads)
{
    const ptrdiff_t n_proj = vp_gated_ceil(d->steps * d->batch, d->proj.rows)
                             * vp_gated_ceil(d->gates * d->hidden, d->proj.cols);
    const ptrdiff_t n_tiles = vp_gated_ceil(d->batch, d->batch_tile);
    (void)n_threads;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (ptrdiff_t k = 0; k < n_proj; k++) F(gproj_tile)(gemm, d, x, w_x, b_x, pre, k);
        /* the implicit barrier: a batch tile reads the projections of every step */
#pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < n_tiles; i++)
            F(gforward_tile)(gemm, d, w_h, b_h, h0, c0, pre, gates, h, c, s, i);
    }
}

/* ------------------------------------------------------------------ backward */
/* The LSTM's elementwise part of step t for nr rows: grad_c_t holds tanh(c_t) on entry
 * and dL/dc_t on exit; next_gc / next_g (step t+1's grad_c and gates) NULL at t = T-1;
 * prev_c NULL where c_{t-1} = 0. */
static void F(lstm_grad_rows)(ptrdiff_t nr, ptrdiff_t H, const T *gates_t, const T *prev_c,
                              const T *next_gc, const T *next_g, const T *gh_t, T *gc_t,
                              T *da_t)
{
    const ptrdiff_t GH = 4 * H;
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *g = gates_t + r * GH, *dh = gh_t + r * H;
        T *gc = gc_t + r * H, *da = da_t + r * GH;
        for (ptrdiff_t j = 0; j < H; j++) {
            const T i = g[j], f = g[H + j], gg = g[2 * H + j], o = g[3 * H + j];
            const T tc = gc[j];
            T dc = dh[j] * o * (1 - tc * tc);
            if (next_gc != NULL)
                dc += next_gc[r * H + j] * next_g[r * GH + H + j];
            const T cp = prev_c != NULL ? prev_c[r * H + j] : 0;
            da[j] = dc * gg * i * (1 - i);
            da[H + j] = dc * cp * f * (1 - f);
            da[2 * H + j] = dc * i * (1 - gg * gg);
            da[3 * H + j] = dh[j] * tc * o * (1 - o);
            gc[j] = dc;
        }
    }
}

/* The GRU's elementwise part of step t: gh_t holds grad_out_t + dR_{t+1} W_h^T on entry,
 * the total dL/dh_t on exit (adding grad_h_{t+1} z_{t+1}; next_gh NULL at t = T-1). */
static void F(gru_grad_rows)(ptrdiff_t nr, ptrdiff_t H, const T *gates_t, const T *prev_h,
                             const T *s_t, const T *next_gh, const T *next_g, T *gh_t,
                             T *da_t, T *dr_t)
{
    const ptrdiff_t GH = 3 * H;
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *g = gates_t + r * GH, *sr = s_t + r * H;
        T *gh = gh_t + r * H, *da = da_t + r * GH, *dr = dr_t + r * GH;
        for (ptrdiff_t j = 0; j < H; j++) {
            T dh = gh[j];
            if (next_gh != NULL)
                dh += next_gh[r * H + j] * next_g[r * GH + j];
            gh[j] = dh;
            const T z = g[j], rr = g[H + j], n = g[2 * H + j];
            const T hp = prev_h != NULL ? prev_h[r * H + j] : 0;
            const T dn = dh * (1 - z) * (1 - n * n);
            const T daz = dh * (hp - n) * z * (1 - z);
            const T dar = dn * sr[j] * rr * (1 - rr);
            da[j] = daz;
            da[H + j] = dar;
            da[2 * H + j] = dn;
            dr[j] = daz;
            dr[H + j] = dar;
            dr[2 * H + j] = dn * rr;
        }
    }
}

/* Batch tile i from t = T-1 down to 0, then its rows of grad_h0 (and grad_c0). */
static void F(gbackward_tile)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *w_h,
                              const T *h0, const T *c0, const T *gates, const T *h,
                              const T *c, const T *s, const T *grad_out, T *grad_h,
                              T *grad_c, T *grad_a, T *grad_rec, T *grad_h0, T *grad_c0,
                              ptrdiff_t i)
{
    const ptrdiff_t B = d->batch, H = d->hidden, GH = d->gates * H, last = d->steps - 1;
    const ptrdiff_t r0 = i * d->batch_tile, nr = vp_gated_min(d->batch_tile, B - r0);
    const ptrdiff_t step = B * H, gstep = B * GH, n = nr * H;
    const int lstm = d->cell == VP_CELL_LSTM;
    for (ptrdiff_t t = last; t >= 0; t--) {
        const ptrdiff_t off = t * step + r0 * H, goff = t * gstep + r0 * GH;
        T *gh_t = grad_h + off;
        memcpy(gh_t, grad_out + off, (size_t)n * sizeof(T));
        if (t < last)
            F(ggemm)(gemm, 'N', 'T', nr, H, GH, grad_rec + goff + gstep, GH, w_h, GH, 1,
                     gh_t, H);
        if (lstm) {
            const T *prev_c = t > 0 ? c + off - step : (c0 != NULL ? c0 + r0 * H : NULL);
            VP_GATED_APPLY(VP_TANH, 0, 0, 0, c + off, grad_c + off, n);
            F(lstm_grad_rows)(nr, H, gates + goff, prev_c,
                              t < last ? grad_c + off + step : NULL,
                              t < last ? gates + goff + gstep : NULL, gh_t, grad_c + off,
                              grad_a + goff);
        } else {
            const T *prev_h = t > 0 ? h + off - step : (h0 != NULL ? h0 + r0 * H : NULL);
            F(gru_grad_rows)(nr, H, gates + goff, prev_h, s + off,
                             t < last ? gh_t + step : NULL,
                             t < last ? gates + goff + gstep : NULL, gh_t, grad_a + goff,
                             grad_rec + goff);
        }
    }
    T *g0 = grad_h0 + r0 * H;
    F(ggemm)(gemm, 'N', 'T', nr, H, GH, grad_rec + r0 * GH, GH, w_h, GH, 0, g0, H);
    for (ptrdiff_t r = 0; r < nr; r++) {
        const T *g = gates + r0 * GH + r * GH;
        if (lstm) { /* grad_c0 = grad_c_0 f_0 */
            const T *gc = grad_c + r0 * H + r * H;
            T *out = grad_c0 + r0 * H + r * H;
            for (ptrdiff_t j = 0; j < H; j++) out[j] = gc[j] * g[H + j];
        } else { /* grad_h0 += grad_h_0 z_0 */
            const T *gh = grad_h + r0 * H + r * H;
            T *out = g0 + r * H;
            for (ptrdiff_t j = 0; j < H; j++) out[j] += gh[j] * g[j];
        }
    }
}

/* Task k of the whole-sequence phase: a tile of dX, dW_x or dW_h, or a bias block of dA
 * (or, GRU, of dR). */
static void F(gsequence_task)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *x,
                              const T *w_x, const T *h, const T *h0, const T *grad_a,
                              const T *grad_rec, T *grad_x, T *grad_w_x, T *grad_w_h,
                              double *partials_x, double *partials_h, ptrdiff_t k)
{
    const ptrdiff_t B = d->batch, Fi = d->n_in, H = d->hidden, GH = d->gates * H;
    const ptrdiff_t rows = d->steps * B;
    const ptrdiff_t x_ct = vp_gated_ceil(Fi, d->grad_x.cols);
    const ptrdiff_t n_x = vp_gated_ceil(rows, d->grad_x.rows) * x_ct;
    const ptrdiff_t wx_ct = vp_gated_ceil(GH, d->grad_w_x.cols);
    const ptrdiff_t n_wx = vp_gated_ceil(Fi, d->grad_w_x.rows) * wx_ct;
    const ptrdiff_t wh_ct = vp_gated_ceil(GH, d->grad_w_h.cols);
    const ptrdiff_t n_wh = vp_gated_ceil(H, d->grad_w_h.rows) * wh_ct;
    const ptrdiff_t n_b = vp_gated_ceil(rows, d->bias_block);
    if (k < n_x) { /* dX[r0:, c0:] = dA[r0:] W_x[c0:]^T */
        const ptrdiff_t r0 = (k / x_ct) * d->grad_x.rows, c0 = (k % x_ct) * d->grad_x.cols;
        F(ggemm)(gemm, 'N', 'T', vp_gated_min(d->grad_x.rows, rows - r0),
                 vp_gated_min(d->grad_x.cols, Fi - c0), GH, grad_a + r0 * GH, GH,
                 w_x + c0 * GH, GH, 0, grad_x + r0 * Fi + c0, Fi);
        return;
    }
    k -= n_x;
    if (k < n_wx) { /* dW_x[i0:, c0:] = X[:, i0:]^T dA[:, c0:], all T B rows inner */
        const ptrdiff_t i0 = (k / wx_ct) * d->grad_w_x.rows;
        const ptrdiff_t c0 = (k % wx_ct) * d->grad_w_x.cols;
        F(ggemm)(gemm, 'T', 'N', vp_gated_min(d->grad_w_x.rows, Fi - i0),
                 vp_gated_min(d->grad_w_x.cols, GH - c0), rows, x + i0, Fi, grad_a + c0, GH,
                 0, grad_w_x + i0 * GH + c0, GH);
        return;
    }
    k -= n_wx;
    if (k < n_wh) { /* dW_h[i0:, c0:] = h0^T dR_0 + h[0:T-1]^T dR[1:T], steps in order */
        const ptrdiff_t i0 = (k / wh_ct) * d->grad_w_h.rows;
        const ptrdiff_t c0 = (k % wh_ct) * d->grad_w_h.cols;
        const ptrdiff_t m = vp_gated_min(d->grad_w_h.rows, H - i0);
        const ptrdiff_t n = vp_gated_min(d->grad_w_h.cols, GH - c0);
        T *out = grad_w_h + i0 * GH + c0;
        T beta = 0;
        if (h0 != NULL) {
            F(ggemm)(gemm, 'T', 'N', m, n, B, h0 + i0, H, grad_rec + c0, GH, 0, out, GH);
            beta = 1;
        }
        F(ggemm)(gemm, 'T', 'N', m, n, rows - B, h + i0, H, grad_rec + B * GH + c0, GH,
                 beta, out, GH);
        return;
    }
    k -= n_wh; /* bias block k: column sums of its rows, in double, rows in order */
    const T *src = grad_a;
    double *dst = partials_x;
    if (k >= n_b) { /* the GRU's recurrent-side bias */
        k -= n_b;
        src = grad_rec;
        dst = partials_h;
    }
    const ptrdiff_t r0 = k * d->bias_block;
    VP_GATED_COLSUM(src + r0 * GH, GH, vp_gated_min(d->bias_block, rows - r0), GH,
                    dst + k * GH);
}

void F(vp_gated_backward)(VP_GATED_GEMM gemm, const vp_gated_dims *d, const T *x,
                          const T *w_x, const T *w_h, const T *h0, const T *c0,
                          const T *gates, const T *h, const T *c, const T *s,
                          const T *grad_out, T *grad_h, T *grad_c, T *grad_a, T *grad_rec,
                          T *grad_h0, T *grad_c0, T *grad_x, T *grad_w_x, T *grad_w_h,
                          double *partials_x, double *partials_h, int n_threads)
{
    const ptrdiff_t B = d->batch, Fi = d->n_in, GH = d->gates * d->hidden;
    const ptrdiff_t rows = d->steps * B;
    const ptrdiff_t n_tiles = vp_gated_ceil(B, d->batch_tile);
    ptrdiff_t n_tasks = 0;
    if (grad_x != NULL)
        n_tasks = vp_gated_ceil(rows, d->grad_x.rows) * vp_gated_ceil(Fi, d->grad_x.cols)
                  + vp_gated_ceil(Fi, d->grad_w_x.rows) * vp_gated_ceil(GH, d->grad_w_x.cols)
                  + vp_gated_ceil(d->hidden, d->grad_w_h.rows)
                        * vp_gated_ceil(GH, d->grad_w_h.cols)
                  + vp_gated_ceil(rows, d->bias_block) * (d->cell == VP_CELL_GRU ? 2 : 1);
    (void)n_threads;
#pragma omp parallel num_threads(n_threads)
    {
#pragma omp for schedule(static)
        for (ptrdiff_t i = 0; i < n_tiles; i++)
            F(gbackward_tile)(gemm, d, w_h, h0, c0, gates, h, c, s, grad_out, grad_h,
                              grad_c, grad_a, grad_rec, grad_h0, grad_c0, i);
        /* the implicit barrier: the sequence GEMMs read every step's dA and dR */
#pragma omp for schedule(dynamic)
        for (ptrdiff_t k = 0; k < n_tasks; k++)
            F(gsequence_task)(gemm, d, x, w_x, h, h0, grad_a, grad_rec, grad_x, grad_w_x,
                              grad_w_h, partials_x, partials_h, k);
    }
}

#undef T
#endif /* VP_GATED_T */
