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

/* Variance (ddof 0) of n contiguous values, two passes in double, in a fixed order;
 * NaN for n = 0. */
double vp_pooled_var_f32(const float *x, ptrdiff_t n);
double vp_pooled_var_f64(const double *x, ptrdiff_t n);

/* Instruction-set levels of the activation loops (csrc/vp_activations.c). */
enum vp_isa_level { VP_ISA_BASELINE = 0, VP_ISA_AVX2 = 1, VP_ISA_AVX512 = 2 };

/* The level the loops use now: chosen at the first call (the best the CPU offers, or
 * the environment variable VARPROP_ISA = baseline | avx2 | avx512, lowered to the best). */
int vp_get_isa_level(void);
/* The best level this CPU (and this build) can run. */
int vp_isa_best(void);
/* Use this level from now on; returns it, or -1 (nothing changed) if the CPU lacks it.
 * Process-wide (per extension module): for tests, not for concurrent callers. */
int vp_set_isa_level(int level);

/* 1 if this build of the C code was compiled with OpenMP. */
int vp_built_with_openmp(void);

#endif /* VP_ACTIVATIONS_H */
