/* The Elman recurrent layer h_t = phi(x_t W_x + h_{t-1} W_h + b), forward and backward
 * through time, for varprop._rnn. Plain C (OpenMP when built with it), no Python API.
 *
 * Layout: time-major and row-major. x (T, B, F), z and h (T, B, H), h0 (B, H), W_x
 * (F, H), W_h (H, H), b (H,). The "rows" of a whole-sequence GEMM are the T B rows of
 * x, z or h seen as (T B, F) or (T B, H) matrices.
 *
 * The BLAS GEMM is the caller's (scipy's cython_blas, passed as a function pointer, so
 * this file links against no BLAS of its own); it must be single-threaded while these
 * loops run, since each OpenMP thread calls it on its own tile.
 *
 * Determinism: every tile grid is a field of vp_rnn_dims, chosen from the shapes alone;
 * each output element is written by exactly one task with one fixed sequence of BLAS
 * calls, and the bias gradient's per-block partial sums (double) are merged by the caller
 * in block order. So results are bitwise identical for any n_threads.
 *
 * Memory safety: given buffers of the sizes above (the Cython layer checks them), every
 * access stays in bounds for any tile sizes >= 1 (a tile is clipped at the matrix edge). */
#ifndef VP_RNN_H
#define VP_RNN_H

#include <stddef.h>

/* The reference BLAS signatures (Fortran, column-major), as scipy.linalg.cython_blas
 * exports them. */
typedef void (*vp_sgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            float *alpha, float *a, int *lda, float *b, int *ldb,
                            float *beta, float *c, int *ldc);
typedef void (*vp_dgemm_fn)(char *transa, char *transb, int *m, int *n, int *k,
                            double *alpha, double *a, int *lda, double *b, int *ldb,
                            double *beta, double *c, int *ldc);

/* A tile grid of a (rows x cols) output: tiles of `rows` x `cols` (clipped at the edges). */
typedef struct {
    ptrdiff_t rows, cols;
} vp_tile;

typedef struct {
    ptrdiff_t steps, batch, n_in, hidden; /* T, B, F, H: all >= 1, T B <= INT_MAX */
    ptrdiff_t batch_tile;                 /* batch rows per task of the recurrence */
    vp_tile proj;                         /* forward: P = X W_x + b, (T B, H) */
    vp_tile grad_x;                       /* backward: dX = dZ W_x^T, (T B, F) */
    vp_tile grad_w_x;                     /* backward: dW_x = X^T dZ, (F, H) */
    vp_tile grad_w_h;                     /* backward: dW_h = sum_t h_{t-1}^T dz_t, (H, H) */
    ptrdiff_t bias_block;                 /* backward: rows of dZ per bias partial sum */
} vp_rnn_dims;

/* z = X W_x + b (one GEMM over the T B rows, in tiles), then for t = 0 .. T-1, per batch
 * tile: z_t += h_{t-1} W_h (h_{-1} = h0; skipped when h0 is NULL: zeros), h_t = phi(z_t)
 * (the epilogue of vp_activations.c). b may be NULL (no bias). */
void vp_rnn_forward_f32(vp_sgemm_fn gemm, const vp_rnn_dims *d, const float *x,
                        const float *w_x, const float *w_h, const float *b, const float *h0,
                        float *z, float *h, int kind, double p0, double p1, int n_threads);
void vp_rnn_forward_f64(vp_dgemm_fn gemm, const vp_rnn_dims *d, const double *x,
                        const double *w_x, const double *w_h, const double *b,
                        const double *h0, double *z, double *h, int kind, double p0,
                        double p1, int n_threads);

/* Backward through time, per batch tile: dz_{T-1} = grad_h_{T-1} phi'(z_{T-1}), then
 * dz_t = (grad_h_t + dz_{t+1} W_h^T) phi'(z_t) down to t = 0, and grad_h0 = dz_0 W_h^T
 * (grad_h0 is the tile's scratch row block until then). Then, over all T B rows:
 * grad_x = dZ W_x^T, grad_w_x = X^T dZ, grad_w_h = h0^T dz_0 + sum_{t>=1} h_{t-1}^T dz_t
 * (the h0 term left out when h0 is NULL) and bias_partials[k, :] = the column sums in
 * double of dZ's rows k bias_block .. (k + 1) bias_block - 1, bias_partials being
 * (ceil(T B / bias_block), H). */
void vp_rnn_backward_f32(vp_sgemm_fn gemm, const vp_rnn_dims *d, const float *x,
                         const float *w_x, const float *w_h, const float *z, const float *h,
                         const float *grad_h, const float *h0, float *grad_z, float *grad_x,
                         float *grad_h0, float *grad_w_x, float *grad_w_h,
                         double *bias_partials, int kind, double p0, double p1,
                         int n_threads);
void vp_rnn_backward_f64(vp_dgemm_fn gemm, const vp_rnn_dims *d, const double *x,
                         const double *w_x, const double *w_h, const double *z,
                         const double *h, const double *grad_h, const double *h0,
                         double *grad_z, double *grad_x, double *grad_h0, double *grad_w_x,
                         double *grad_w_h, double *bias_partials, int kind, double p0,
                         double p1, int n_threads);

int vp_rnn_built_with_openmp(void);

#endif /* VP_RNN_H */
