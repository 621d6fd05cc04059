/* The gated recurrent cells, LSTM and GRU, forward and backward through time, for
 * varprop._gated. Plain C (OpenMP when built with it), no Python API. docs/gated.md,
 * section 4, gives the equations; this header says what each buffer holds.
 *
 * Layout: time-major and row-major, the gates in the canonical order of
 * varprop.recurrent.gated_arrays (i, f, g, o for the LSTM; z, r, n for the GRU), G of
 * them (4 or 3), each a block of H columns. x (T, B, F), w_x (F, G H), w_h (H, G H),
 * b_x and b_h (G H), h0 and c0 (B, H); pre and gates (T, B, G H); h, c and s (T, B, H).
 *
 * The BLAS GEMM is the caller's (scipy's cython_blas, passed as a function pointer), as
 * in vp_rnn.h; it must be single-threaded while these loops run.
 *
 * Determinism, as vp_rnn.h: every tile grid is a field of vp_gated_dims, chosen from the
 * shapes alone; each output element is written by one task with one fixed sequence of
 * BLAS calls and loops; the bias gradients' per-block partial sums (double) are merged by
 * the caller in block order. So results are bitwise identical for any n_threads.
 *
 * Memory safety: given buffers of the sizes above (the Cython layer checks them), every
 * access stays in bounds for any tile sizes >= 1 (a tile is clipped at the matrix edge).
 * No loop allocates: the per-step scratch of each batch tile is its own rows of an
 * output buffer. */
#ifndef VP_GATED_H
#define VP_GATED_H

#include <stddef.h>

#include "vp_rnn.h" /* vp_sgemm_fn, vp_dgemm_fn, vp_tile */

enum vp_gated_cell { VP_CELL_LSTM = 0, VP_CELL_GRU = 1 };

typedef struct {
    int cell;                              /* VP_CELL_LSTM or VP_CELL_GRU */
    ptrdiff_t steps, batch, n_in, hidden;  /* T, B, F, H: all >= 1, T B <= INT_MAX */
    ptrdiff_t gates;                       /* G: 4 (LSTM) or 3 (GRU); G H <= INT_MAX */
    ptrdiff_t batch_tile;                  /* batch rows per task of the recurrence */
    vp_tile proj;                          /* forward: P = X W_x + b_x, (T B, G H) */
    vp_tile grad_x;                        /* backward: dX = dA W_x^T, (T B, F) */
    vp_tile grad_w_x;                      /* backward: dW_x = X^T dA, (F, G H) */
    vp_tile grad_w_h;                      /* backward: dW_h = sum_t h_{t-1}^T dR_t, (H, G H) */
    ptrdiff_t bias_block;                  /* backward: rows per bias partial sum */
} vp_gated_dims;

/* Forward. pre = X W_x + b_x for all T B rows (tiled GEMM), then per batch tile, t = 0 ..
 * T-1, with h_{-1} = h0 and c_{-1} = c0 (zeros where NULL; c0 only for the LSTM):
 *   LSTM: pre_t += h_{t-1} W_h + b_h (one GEMM);  gates_t = (s, s, tanh, s)(pre_t);
 *         c_t = f c_{t-1} + i g;  h_t = o tanh(c_t).        s: the unused argument.
 *   GRU:  pre_t[z, r] += h_{t-1} W_h[:, z r] + b_h[z r];  (z, r) = sigmoid;
 *         s_t = h_{t-1} W_h[:, n] + b_h[n];  pre_t[n] = P_t[n] + r s_t;
 *         n = tanh(pre_t[n]);  h_t = z h_{t-1} + (1 - z) n.   c: unused (may be NULL).
 * So pre holds the gates' full pre-activations (the GRU's n block: the candidate's).
 * b_x, b_h may be NULL (no bias). The activations are vp_activations.c's epilogues. */
void vp_gated_forward_f32(vp_sgemm_fn gemm, const vp_gated_dims *d, const float *x,
                          const float *w_x, const float *w_h, const float *b_x,
                          const float *b_h, const float *h0, const float *c0, float *pre,
                          float *gates, float *h, float *c, float *s, int n_threads);
void vp_gated_forward_f64(vp_dgemm_fn gemm, const vp_gated_dims *d, const double *x,
                          const double *w_x, const double *w_h, const double *b_x,
                          const double *b_h, const double *h0, const double *c0,
                          double *pre, double *gates, double *h, double *c, double *s,
                          int n_threads);

/* Backward through time of the forward above, given grad_out = the loss's direct
 * gradient on each h_t (T, B, H). Per batch tile from t = T-1 down to 0:
 *   grad_h_t = grad_out_t + dR_{t+1} W_h^T (+ grad_h_{t+1} z_{t+1}, GRU): the total dL/dh_t
 *   LSTM: grad_c_t = grad_h_t o (1 - tanh^2 c_t) + grad_c_{t+1} f_{t+1}: the total dL/dc_t
 *         dA_t = (grad_c g i(1-i), grad_c c_{t-1} f(1-f), grad_c i (1-g^2),
 *                 grad_h tanh(c) o(1-o));  dR_t = dA_t (grad_rec may alias grad_a)
 *   GRU:  dn = grad_h (1-z)(1-n^2);  dA_t = (grad_h (h_{t-1} - n) z(1-z), dn s r(1-r), dn)
 *         dR_t = (dA_t[z], dA_t[r], dn r)   (the gradient of h_{t-1} W_h + b_h)
 * then grad_h0 = dR_0 W_h^T (+ grad_h_0 z_0, GRU) and grad_c0 = grad_c_0 f_0 (LSTM).
 * dA (grad_a) is dL/d(pre) on the input side, dR (grad_rec) on the recurrent side; for
 * the LSTM they are equal and grad_rec must be grad_a. grad_c: the LSTM's (T, B, H)
 * output, NULL for the GRU (so is grad_c0, and c / c0 are not read).
 * When grad_x is not NULL, the whole-sequence phase follows: grad_x = dA W_x^T,
 * grad_w_x = X^T dA, grad_w_h = h0^T dR_0 + sum_{t>=1} h_{t-1}^T dR_t (the h0 term left
 * out when h0 is NULL), and the column sums in double of dA (into partials_x) and, for
 * the GRU, of dR (partials_h), per block of bias_block rows: (ceil(T B / bias_block),
 * G H) each. When grad_x is NULL that phase is skipped and grad_w_x, grad_w_h and the
 * partials are not touched (may be NULL). */
void vp_gated_backward_f32(vp_sgemm_fn gemm, const vp_gated_dims *d, const float *x,
                           const float *w_x, const float *w_h, const float *h0,
                           const float *c0, const float *gates, const float *h,
                           const float *c, const float *s, const float *grad_out,
                           float *grad_h, float *grad_c, float *grad_a, float *grad_rec,
                           float *grad_h0, float *grad_c0, float *grad_x, float *grad_w_x,
                           float *grad_w_h, double *partials_x, double *partials_h,
                           int n_threads);
void vp_gated_backward_f64(vp_dgemm_fn gemm, const vp_gated_dims *d, const double *x,
                           const double *w_x, const double *w_h, const double *h0,
                           const double *c0, const double *gates, const double *h,
                           const double *c, const double *s, const double *grad_out,
                           double *grad_h, double *grad_c, double *grad_a, double *grad_rec,
                           double *grad_h0, double *grad_c0, double *grad_x,
                           double *grad_w_x, double *grad_w_h, double *partials_x,
                           double *partials_h, int n_threads);

int vp_gated_built_with_openmp(void);

#endif /* VP_GATED_H */
