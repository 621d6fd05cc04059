/* Activation epilogues of the dense kernels: value and derivative loops over contiguous
 * rows, in float and double. Plain C, no Python API. */
#ifndef VP_ACTIVATIONS_H
#define VP_ACTIVATIONS_H

#include <stddef.h>

/* Must match the records of varprop/activations.py (_SPECS: kernel_id, and kernel_args
 * for p0, p1, named as the formula parameters there); tests/test_activation_records.py
 * parses this enum and fails when they disagree. */
enum vp_activation {
    VP_LINEAR = 0,
    VP_RELU = 1,       /* p0 = negative_slope (0) */
    VP_LEAKY_RELU = 2, /* p0 = negative_slope */
    VP_ELU = 3,        /* p0 = alpha, p1 = scale (1 for elu) */
    VP_SELU = 4,       /* p0 = alpha, p1 = scale (the SELU constants) */
    VP_GELU = 5,
    VP_GELU_TANH = 6,
    VP_TANH = 7,
    VP_SIGMOID = 8,
    VP_SOFTPLUS = 9,
    VP_SILU = 10,
    VP_SOFTSIGN = 11,
    VP_N_ACTIVATIONS = 12
};

/* Per-column moment accumulators of one tile: shift (a value of the column, so the sums
 * are of small deviations), sum of deviations, sum of squared deviations. */
typedef struct {
    double *shift;
    double *s1;
    double *s2;
} vp_moments;

/* z[r, :] += bias (if not NULL), a[r, :] = phi(z[r, :]) for rows x cols with leading
 * dimension ld; if zm / am are not NULL, accumulate the moments of z and a over the rows
 * (the accumulators are written, not added to). */
void vp_forward_epilogue_f32(int kind, double p0, double p1, float *z, float *a,
                             ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                             const float *bias, vp_moments *zm, vp_moments *am);
void vp_forward_epilogue_f64(int kind, double p0, double p1, double *z, double *a,
                             ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                             const double *bias, vp_moments *zm, vp_moments *am);

/* dz = g * phi'(z) elementwise over n contiguous values. */
void vp_backward_epilogue_f32(int kind, double p0, double p1, const float *z,
                              const float *g, float *dz, ptrdiff_t n);
void vp_backward_epilogue_f64(int kind, double p0, double p1, const double *z,
                              const double *g, double *dz, ptrdiff_t n);

/* out = phi(x) (derivative = 0) or phi'(x) (derivative = 1): for tests of the C math. */
void vp_activation_apply_f32(int kind, double p0, double p1, int derivative,
                             const float *x, float *out, ptrdiff_t n);
void vp_activation_apply_f64(int kind, double p0, double p1, int derivative,
                             const double *x, double *out, ptrdiff_t n);

/* acc[j] = sum over rows of x[r, j] in double, rows summed in order (deterministic). */
void vp_column_sums_f32(const float *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                        double *acc);
void vp_column_sums_f64(const double *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,
                        double *acc);

/* 1 if this build of the C code was compiled with OpenMP. */
int vp_built_with_openmp(void);

#endif /* VP_ACTIVATIONS_H */
