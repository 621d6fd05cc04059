/* Activation epilogues: see vp_activations.h.
 *
 * Each activation is a static inline function of one double; the loops are generated per
 * activation (the switch stays outside the loop) so the compiler vectorizes them. float
 * data are computed in double and rounded once, which keeps float results within an ulp
 * of the float64 reference.
 *
 * Instruction sets (docs/kernels.md, "Activation loops"): on x86-64 with GCC or clang the
 * loops are compiled three times, for the portable baseline (SSE2), for AVX2 + FMA and
 * for AVX-512 (F, DQ, BW, VL; 512-bit vectors), and every exported function dispatches on
 * one process-wide level chosen at the first call: the best the CPU offers
 * (__builtin_cpu_supports, which also checks that the OS saves the wide registers), or
 * the one the environment variable VARPROP_ISA names (baseline, avx2, avx512; a level the
 * CPU lacks is lowered to the best it has). vp_set_isa_level lets tests run every path
 * the machine can execute against the float64 reference. Explicit dispatch instead of
 * target_clones: an ifunc cannot be overridden, and the override is what tests need.
 * The level never depends on the thread count, so results stay bitwise identical for any
 * number of threads on a given machine and level (levels may differ in the last bit:
 * FMA contraction rounds once where the baseline rounds twice).
 */
#include "vp_activations.h"

#include <stdlib.h>
#include <string.h>

#include "vp_math.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define VP_NOINLINE __attribute__((noinline)) /* one function per level, not one huge one */
#else
#define VP_NOINLINE
#endif

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) \
    && !defined(VP_NO_TARGET_CLONES)
#define VP_MULTI_ISA 1
#define VP_TARGET_AVX2 __attribute__((target("avx2,fma")))
#ifdef __clang__
#define VP_TARGET_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#else /* GCC prefers 256-bit vectors on AVX-512 unless told otherwise */
#define VP_TARGET_AVX512 \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prefer-vector-width=512")))
#endif
#else
#define VP_MULTI_ISA 0
#endif

/* copies of constants of varprop/activations.py, checked by tests/test_activation_records.py */
#define VP_SQRT_2_OVER_PI 0.79788456080286535588 /* _SQRT_2_OVER_PI */
#define VP_GELU_TANH_COEFF 0.044715 /* GELU_TANH_COEFF */
#define VP_GATE_CLIP 40.0 /* _GATE_CLIP */
#define VP_SILU_CLIP 800.0 /* _SILU_CLIP */

int vp_built_with_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

/* ------------------------------------------------------------------ values phi(x) */
VP_INLINE double phi_linear(double x, double p0, double p1, int lo) { (void)p0; (void)p1; return x; }

VP_INLINE double phi_relu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    return x <= 0.0 ? 0.0 : x; /* NaN falls through to x */
}

VP_INLINE double phi_leaky(double x, double p0, double p1, int lo)
{
    (void)p1;
    /* slope 0 is relu: 0 * -inf would be NaN where relu(-inf) is 0; NaN falls through */
    return x <= 0.0 ? (p0 == 0.0 ? 0.0 : p0 * x) : x;
}

VP_INLINE double phi_elu(double x, double p0, double p1, int lo)
{
    double neg = x > 0.0 ? 0.0 : x; /* min(x, 0) that keeps NaN */
    return p1 * (x > 0.0 ? x : p0 * vp_expm1_neg_p(neg, lo));
}

VP_INLINE double phi_gelu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    return x < -VP_GATE_CLIP ? 0.0 : x * vp_normal_cdf_p(x, lo);
}

VP_INLINE double gelu_tanh_arg(double u) { return 2.0 * VP_SQRT_2_OVER_PI * (u + VP_GELU_TANH_COEFF * u * u * u); }

VP_INLINE double clip_gate(double x)
{
    double u = x < -VP_GATE_CLIP ? -VP_GATE_CLIP : x;
    return u > VP_GATE_CLIP ? VP_GATE_CLIP : u;
}

VP_INLINE double phi_gelu_tanh(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    /* 0.5 x (1 + tanh g) = x sigmoid(2g): the sigmoid form keeps the negative tail */
    double u = clip_gate(x);
    double v = u * vp_sigmoid_p(gelu_tanh_arg(u), lo).value;
    v = x < -VP_GATE_CLIP ? 0.0 : v;
    return x > VP_GATE_CLIP ? x : v;
}

VP_INLINE double phi_tanh(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double e = vp_expm1_neg_p(-2.0 * fabs(x), lo);
    return copysign(-e / (e + 2.0), x);
}

VP_INLINE double phi_sigmoid(double x, double p0, double p1, int lo) { (void)p0; (void)p1; return vp_sigmoid_p(x, lo).value; }

VP_INLINE double phi_softplus(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    return (x > 0.0 ? x : 0.0) + vp_log1p_unit_p(vp_exp_p(-fabs(x), lo), lo);
}

VP_INLINE double phi_silu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double xc = x < -VP_SILU_CLIP ? -VP_SILU_CLIP : x;
    return xc * vp_sigmoid_p(xc, lo).value;
}

VP_INLINE double phi_softsign(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double a = fabs(x);
    return a == INFINITY ? copysign(1.0, x) : x / (1.0 + a);
}

/* ------------------------------------------------------------- derivatives phi'(x) */
VP_INLINE double dphi_linear(double x, double p0, double p1, int lo) { (void)p0; (void)p1; return x != x ? x : 1.0; }

VP_INLINE double dphi_relu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    return x > 0.0 ? 1.0 : (x <= 0.0 ? 0.0 : x);
}

VP_INLINE double dphi_leaky(double x, double p0, double p1, int lo)
{
    (void)p1;
    return x > 0.0 ? 1.0 : (x <= 0.0 ? p0 : x);
}

VP_INLINE double dphi_elu(double x, double p0, double p1, int lo)
{
    double neg = x > 0.0 ? 0.0 : x;
    return p1 * (x > 0.0 ? 1.0 : p0 * vp_exp_p(neg, lo));
}

VP_INLINE double dphi_gelu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    /* Phi(x) + x phi(x), one exp for both (the tail's density is exp(-xc^2 / 2): both
     * clip |x| at 40, VP_GATE_CLIP). For x <= 0 the sum cancels to zero near x = -0.75;
     * written as density * (ratio + x / sqrt(2 pi)), the cancellation happens before the
     * exp's rounding error enters, which then stays relative. */
    double xc = clip_gate(x);
    vp_normal_tail q = vp_normal_tail_p(fabs(x), lo);
    double slope = xc * VP_INV_SQRT_2PI;
    return x > 0.0 ? (1.0 - q.tail) + slope * q.density : q.density * (q.ratio + slope);
}

VP_INLINE double dphi_gelu_tanh(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double u = clip_gate(x);
    vp_logistic s = vp_sigmoid_p(gelu_tanh_arg(u), lo);
    double dg = VP_SQRT_2_OVER_PI * (1.0 + 3.0 * VP_GELU_TANH_COEFF * u * u);
    return s.value + 2.0 * u * s.slope * dg;
}

VP_INLINE double dphi_tanh(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double e = vp_exp_p(-2.0 * fabs(x), lo);
    double inv = 1.0 / (1.0 + e);
    return 4.0 * e * inv * inv; /* 1 - tanh^2 without cancellation in the tails */
}

VP_INLINE double dphi_sigmoid(double x, double p0, double p1, int lo) { (void)p0; (void)p1; return vp_sigmoid_p(x, lo).slope; }

VP_INLINE double dphi_silu(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double xc = x < -VP_SILU_CLIP ? -VP_SILU_CLIP : x;
    xc = xc > VP_SILU_CLIP ? VP_SILU_CLIP : xc;
    vp_logistic s = vp_sigmoid_p(xc, lo);
    return s.value + xc * s.slope;
}

VP_INLINE double dphi_softsign(double x, double p0, double p1, int lo)
{
    (void)p0; (void)p1;
    double d = 1.0 + fabs(x);
    return 1.0 / (d * d);
}

/* ------------------------------------------------------------------- dispatch */
/* LOOP(f) expands to a loop applying f; DISPATCH picks it per activation. */
#define VP_DISPATCH_VALUE(LOOP)                       \
    switch (kind) {                                   \
    case VP_LINEAR: LOOP(phi_linear); break;          \
    case VP_RELU: LOOP(phi_relu); break;              \
    case VP_LEAKY_RELU: LOOP(phi_leaky); break;       \
    case VP_ELU: case VP_SELU: LOOP(phi_elu); break;  \
    case VP_GELU: LOOP(phi_gelu); break;              \
    case VP_GELU_TANH: LOOP(phi_gelu_tanh); break;    \
    case VP_TANH: LOOP(phi_tanh); break;              \
    case VP_SIGMOID: LOOP(phi_sigmoid); break;        \
    case VP_SOFTPLUS: LOOP(phi_softplus); break;      \
    case VP_SILU: LOOP(phi_silu); break;              \
    case VP_SOFTSIGN: LOOP(phi_softsign); break;      \
    default: break;                                   \
    }

#define VP_DISPATCH_DERIVATIVE(LOOP)                  \
    switch (kind) {                                   \
    case VP_LINEAR: LOOP(dphi_linear); break;         \
    case VP_RELU: LOOP(dphi_relu); break;             \
    case VP_LEAKY_RELU: LOOP(dphi_leaky); break;      \
    case VP_ELU: case VP_SELU: LOOP(dphi_elu); break; \
    case VP_GELU: LOOP(dphi_gelu); break;             \
    case VP_GELU_TANH: LOOP(dphi_gelu_tanh); break;   \
    case VP_TANH: LOOP(dphi_tanh); break;             \
    case VP_SIGMOID: LOOP(dphi_sigmoid); break;       \
    case VP_SOFTPLUS: LOOP(phi_sigmoid); break;       \
    case VP_SILU: LOOP(dphi_silu); break;             \
    case VP_SOFTSIGN: LOOP(dphi_softsign); break;     \
    default: break;                                   \
    }

/* ---------------------------------------------------------- per-dtype functions */
#define VP_DEFINE_EPILOGUES(T, SUFFIX, ISA, ATTR)                                           \
    static inline void moments_first_row_##SUFFIX##_##ISA(const T *row, ptrdiff_t cols, vp_moments *m)    \
    {                                                                                       \
        for (ptrdiff_t j = 0; j < cols; j++) {                                              \
            double v = (double)row[j];                                                      \
            m->shift[j] = isfinite(v) ? v : 0.0; /* keep inf/NaN in the sums, not the shift */ \
            m->s1[j] = 0.0;                                                                 \
            m->s2[j] = 0.0;                                                                 \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    static inline void moments_add_row_##SUFFIX##_##ISA(const T *restrict row, ptrdiff_t cols,            \
                                         const double *restrict shift,                     \
                                         double *restrict s1, double *restrict s2)         \
    {                                                                                       \
        _Pragma("omp simd")                                                                 \
        for (ptrdiff_t j = 0; j < cols; j++) {                                              \
            double d = (double)row[j] - shift[j];                                           \
            s1[j] += d;                                                                     \
            s2[j] += d * d;                                                                 \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    static ATTR VP_NOINLINE void forward_epilogue_##SUFFIX##_##ISA(int kind, double p0, double p1, T *z, T *a, \
                                                ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols, \
                                                const T *bias, vp_moments *zm,              \
                                                vp_moments *am)                             \
    {                                                                                       \
        for (ptrdiff_t r = 0; r < rows; r++) {                                              \
            T *restrict zr = z + r * ld;                                                    \
            T *restrict ar = a + r * ld;                                                    \
            if (bias) {                                                                     \
                _Pragma("omp simd")                                                         \
                for (ptrdiff_t j = 0; j < cols; j++) zr[j] += bias[j];                      \
            }                                                                               \
            _Pragma("GCC diagnostic push")                                                  \
            _Pragma("GCC diagnostic ignored \"-Wunused-value\"")                            \
            VP_DISPATCH_VALUE(VP_APPLY_ROW)                                                 \
            _Pragma("GCC diagnostic pop")                                                   \
            if (zm) {                                                                       \
                if (r == 0) moments_first_row_##SUFFIX##_##ISA(zr, cols, zm);               \
                moments_add_row_##SUFFIX##_##ISA(zr, cols, zm->shift, zm->s1, zm->s2);              \
            }                                                                               \
            if (am) {                                                                       \
                if (r == 0) moments_first_row_##SUFFIX##_##ISA(ar, cols, am);               \
                moments_add_row_##SUFFIX##_##ISA(ar, cols, am->shift, am->s1, am->s2);              \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    static ATTR VP_NOINLINE void backward_epilogue_##SUFFIX##_##ISA(int kind, double p0, double p1,            \
                                                 const T *z, const T *g, T *dz, ptrdiff_t n) \
    {                                                                                       \
        const T *restrict zz = z;                                                           \
        const T *restrict gg = g;                                                           \
        T *restrict out = dz;                                                               \
        VP_DISPATCH_DERIVATIVE(VP_GRAD_LOOP)                                                \
    }                                                                                       \
                                                                                            \
    static ATTR VP_NOINLINE void activation_apply_##SUFFIX##_##ISA(int kind, double p0, double p1,             \
                                                int derivative, const T *x, T *y,           \
                                                ptrdiff_t n)                                \
    {                                                                                       \
        const T *restrict in = x;                                                           \
        T *restrict out = y;                                                                \
        if (derivative) {                                                                   \
            VP_DISPATCH_DERIVATIVE(VP_MAP_LOOP)                                             \
        } else {                                                                            \
            VP_DISPATCH_VALUE(VP_MAP_LOOP)                                                  \
        }                                                                                   \
    }

/* a row of the tile: ar = f(zr) */
#define VP_APPLY_ROW(f)                                                      \
    _Pragma("omp simd") for (ptrdiff_t j = 0; j < cols; j++) ar[j] = f(zr[j], p0, p1, sizeof(*zr) == 4)
/* dz = g * f'(z) */
#define VP_GRAD_LOOP(f)                                                      \
    _Pragma("omp simd") for (ptrdiff_t i = 0; i < n; i++) out[i] = gg[i] * f(zz[i], p0, p1, sizeof(*zz) == 4)
/* out = f(in) */
#define VP_MAP_LOOP(f)                                                       \
    _Pragma("omp simd") for (ptrdiff_t i = 0; i < n; i++) out[i] = f(in[i], p0, p1, sizeof(*in) == 4)

#define VP_NOATTR
VP_DEFINE_EPILOGUES(float, f32, base, VP_NOATTR)
VP_DEFINE_EPILOGUES(double, f64, base, VP_NOATTR)
#if VP_MULTI_ISA
VP_DEFINE_EPILOGUES(float, f32, avx2, VP_TARGET_AVX2)
VP_DEFINE_EPILOGUES(double, f64, avx2, VP_TARGET_AVX2)
VP_DEFINE_EPILOGUES(float, f32, avx512, VP_TARGET_AVX512)
VP_DEFINE_EPILOGUES(double, f64, avx512, VP_TARGET_AVX512)
#endif

/* ------------------------------------------------------------ instruction set */
static int vp_cpu_level(void)
{
#if VP_MULTI_ISA
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
        && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return VP_ISA_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return VP_ISA_AVX2;
#endif
    return VP_ISA_BASELINE;
}

/* -1 until the first call; then a level <= vp_cpu_level(). Every thread that races on
 * the first call computes the same value, so the plain int is enough. */
static int vp_isa = -1;

int vp_isa_best(void) { return vp_cpu_level(); }

int vp_get_isa_level(void)
{
    if (vp_isa < 0) {
        int best = vp_cpu_level(), want = best;
        const char *env = getenv("VARPROP_ISA");
        if (env && strcmp(env, "baseline") == 0) want = VP_ISA_BASELINE;
        else if (env && strcmp(env, "avx2") == 0) want = VP_ISA_AVX2;
        else if (env && strcmp(env, "avx512") == 0) want = VP_ISA_AVX512;
        vp_isa = want < best ? want : best;
    }
    return vp_isa;
}

int vp_set_isa_level(int level)
{
    if (level < VP_ISA_BASELINE || level > vp_cpu_level()) return -1;
    vp_isa = level;
    return level;
}

#if VP_MULTI_ISA
#define VP_PICK(NAME, SUFFIX, ARGS)                                  \
    switch (vp_get_isa_level()) {                                    \
    case VP_ISA_AVX512: NAME##_##SUFFIX##_avx512 ARGS; return;       \
    case VP_ISA_AVX2: NAME##_##SUFFIX##_avx2 ARGS; return;           \
    default: NAME##_##SUFFIX##_base ARGS; return;                    \
    }
#else
#define VP_PICK(NAME, SUFFIX, ARGS) NAME##_##SUFFIX##_base ARGS;
#endif

#define VP_DEFINE_EXPORTS(T, SUFFIX)                                                        \
    void vp_forward_epilogue_##SUFFIX(int kind, double p0, double p1, T *z, T *a,           \
                                      ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,         \
                                      const T *bias, vp_moments *zm, vp_moments *am)        \
    {                                                                                       \
        VP_PICK(forward_epilogue, SUFFIX, (kind, p0, p1, z, a, ld, rows, cols, bias, zm, am)) \
    }                                                                                       \
    void vp_backward_epilogue_##SUFFIX(int kind, double p0, double p1, const T *z,          \
                                       const T *g, T *dz, ptrdiff_t n)                      \
    {                                                                                       \
        VP_PICK(backward_epilogue, SUFFIX, (kind, p0, p1, z, g, dz, n))                     \
    }                                                                                       \
    void vp_activation_apply_##SUFFIX(int kind, double p0, double p1, int derivative,       \
                                      const T *x, T *out, ptrdiff_t n)                      \
    {                                                                                       \
        VP_PICK(activation_apply, SUFFIX, (kind, p0, p1, derivative, x, out, n))            \
    }                                                                                       \
    void vp_column_sums_##SUFFIX(const T *x, ptrdiff_t ld, ptrdiff_t rows, ptrdiff_t cols,  \
                                 double *acc)                                               \
    {                                                                                       \
        for (ptrdiff_t j = 0; j < cols; j++) acc[j] = 0.0;                                  \
        for (ptrdiff_t r = 0; r < rows; r++) {                                              \
            const T *restrict row = x + r * ld;                                             \
            double *restrict out = acc;                                                     \
            _Pragma("omp simd")                                                             \
            for (ptrdiff_t j = 0; j < cols; j++) out[j] += (double)row[j];                  \
        }                                                                                   \
    }

VP_DEFINE_EXPORTS(float, f32)
VP_DEFINE_EXPORTS(double, f64)

/* Two passes (mean, then squared deviations) in double over contiguous data, in one
 * fixed order: the variance of a gradient for varprop.measure without numpy's float64
 * temporaries (docs/kernels.md, "measure"). */
#define VP_DEFINE_POOLED_VAR(T, SUFFIX)                                                 \
    double vp_pooled_var_##SUFFIX(const T *x, ptrdiff_t n)                              \
    {                                                                                   \
        double s = 0.0, q = 0.0;                                                        \
        if (n <= 0) return NAN;                                                         \
        _Pragma("omp simd reduction(+:s)")                                              \
        for (ptrdiff_t i = 0; i < n; i++) s += (double)x[i];                            \
        double mean = s / (double)n;                                                    \
        _Pragma("omp simd reduction(+:q)")                                              \
        for (ptrdiff_t i = 0; i < n; i++) {                                             \
            double d = (double)x[i] - mean;                                             \
            q += d * d;                                                                 \
        }                                                                               \
        return q / (double)n;                                                           \
    }

VP_DEFINE_POOLED_VAR(float, f32)
VP_DEFINE_POOLED_VAR(double, f64)
