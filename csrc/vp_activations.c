/* Activation epilogues: see vp_activations.h.
 *
 * Each activation is a static inline function of one double; the loops are generated per
 * activation (the switch stays outside the loop) so the compiler vectorizes them. float
 * data are computed in double and rounded once, which keeps float results within an ulp
 * of the float64 reference. On x86-64 with GCC the loops are also compiled for
 * x86-64-v3 (AVX2 + FMA) and the best clone is picked at load time: portable binaries that
 * still use the wide vectors where the machine has them.
 */
#include "vp_activations.h"

#include "vp_math.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(VP_NO_TARGET_CLONES)
#define VP_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define VP_CLONES
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
static inline double phi_linear(double x, double p0, double p1) { (void)p0; (void)p1; return x; }

static inline double phi_relu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    return x <= 0.0 ? 0.0 : x; /* NaN falls through to x */
}

static inline double phi_leaky(double x, double p0, double p1)
{
    (void)p1;
    /* slope 0 is relu: 0 * -inf would be NaN where relu(-inf) is 0; NaN falls through */
    return x <= 0.0 ? (p0 == 0.0 ? 0.0 : p0 * x) : x;
}

static inline double phi_elu(double x, double p0, double p1)
{
    double neg = x > 0.0 ? 0.0 : x; /* min(x, 0) that keeps NaN */
    return p1 * (x > 0.0 ? x : p0 * vp_expm1_neg(neg));
}

static inline double phi_gelu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    return x < -VP_GATE_CLIP ? 0.0 : x * vp_normal_cdf(x);
}

static inline double gelu_tanh_arg(double u) { return 2.0 * VP_SQRT_2_OVER_PI * (u + VP_GELU_TANH_COEFF * u * u * u); }

static inline double clip_gate(double x)
{
    double u = x < -VP_GATE_CLIP ? -VP_GATE_CLIP : x;
    return u > VP_GATE_CLIP ? VP_GATE_CLIP : u;
}

static inline double phi_gelu_tanh(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    /* 0.5 x (1 + tanh g) = x sigmoid(2g): the sigmoid form keeps the negative tail */
    double u = clip_gate(x);
    double v = u * vp_sigmoid(gelu_tanh_arg(u)).value;
    v = x < -VP_GATE_CLIP ? 0.0 : v;
    return x > VP_GATE_CLIP ? x : v;
}

static inline double phi_tanh(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double e = vp_expm1_neg(-2.0 * fabs(x));
    return copysign(-e / (e + 2.0), x);
}

static inline double phi_sigmoid(double x, double p0, double p1) { (void)p0; (void)p1; return vp_sigmoid(x).value; }

static inline double phi_softplus(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    return (x > 0.0 ? x : 0.0) + vp_log1p_unit(vp_exp(-fabs(x)));
}

static inline double phi_silu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double xc = x < -VP_SILU_CLIP ? -VP_SILU_CLIP : x;
    return xc * vp_sigmoid(xc).value;
}

static inline double phi_softsign(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double a = fabs(x);
    return a == INFINITY ? copysign(1.0, x) : x / (1.0 + a);
}

/* ------------------------------------------------------------- derivatives phi'(x) */
static inline double dphi_linear(double x, double p0, double p1) { (void)p0; (void)p1; return x != x ? x : 1.0; }

static inline double dphi_relu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    return x > 0.0 ? 1.0 : (x <= 0.0 ? 0.0 : x);
}

static inline double dphi_leaky(double x, double p0, double p1)
{
    (void)p1;
    return x > 0.0 ? 1.0 : (x <= 0.0 ? p0 : x);
}

static inline double dphi_elu(double x, double p0, double p1)
{
    double neg = x > 0.0 ? 0.0 : x;
    return p1 * (x > 0.0 ? 1.0 : p0 * vp_exp(neg));
}

static inline double dphi_gelu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double xc = clip_gate(x);
    return vp_normal_cdf(x) + xc * VP_INV_SQRT_2PI * vp_exp(-0.5 * xc * xc);
}

static inline double dphi_gelu_tanh(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double u = clip_gate(x);
    vp_logistic s = vp_sigmoid(gelu_tanh_arg(u));
    double dg = VP_SQRT_2_OVER_PI * (1.0 + 3.0 * VP_GELU_TANH_COEFF * u * u);
    return s.value + 2.0 * u * s.slope * dg;
}

static inline double dphi_tanh(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double e = vp_exp(-2.0 * fabs(x));
    double inv = 1.0 / (1.0 + e);
    return 4.0 * e * inv * inv; /* 1 - tanh^2 without cancellation in the tails */
}

static inline double dphi_sigmoid(double x, double p0, double p1) { (void)p0; (void)p1; return vp_sigmoid(x).slope; }

static inline double dphi_silu(double x, double p0, double p1)
{
    (void)p0; (void)p1;
    double xc = x < -VP_SILU_CLIP ? -VP_SILU_CLIP : x;
    xc = xc > VP_SILU_CLIP ? VP_SILU_CLIP : xc;
    vp_logistic s = vp_sigmoid(xc);
    return s.value + xc * s.slope;
}

static inline double dphi_softsign(double x, double p0, double p1)
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
#define VP_DEFINE_EPILOGUES(T, SUFFIX)                                                      \
    static void moments_first_row_##SUFFIX(const T *row, ptrdiff_t cols, vp_moments *m)    \
    {                                                                                       \
        for (ptrdiff_t j = 0; j < cols; j++) {                                              \
            double v = (double)row[j];                                                      \
            m->shift[j] = isfinite(v) ? v : 0.0; /* keep inf/NaN in the sums, not the shift */ \
            m->s1[j] = 0.0;                                                                 \
            m->s2[j] = 0.0;                                                                 \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    static void moments_add_row_##SUFFIX(const T *restrict row, ptrdiff_t cols,            \
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
    VP_CLONES void vp_forward_epilogue_##SUFFIX(int kind, double p0, double p1, T *z, T *a, \
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
                if (r == 0) moments_first_row_##SUFFIX(zr, cols, zm);                       \
                moments_add_row_##SUFFIX(zr, cols, zm->shift, zm->s1, zm->s2);              \
            }                                                                               \
            if (am) {                                                                       \
                if (r == 0) moments_first_row_##SUFFIX(ar, cols, am);                       \
                moments_add_row_##SUFFIX(ar, cols, am->shift, am->s1, am->s2);              \
            }                                                                               \
        }                                                                                   \
    }                                                                                       \
                                                                                            \
    VP_CLONES void vp_backward_epilogue_##SUFFIX(int kind, double p0, double p1,            \
                                                 const T *z, const T *g, T *dz, ptrdiff_t n) \
    {                                                                                       \
        const T *restrict zz = z;                                                           \
        const T *restrict gg = g;                                                           \
        T *restrict out = dz;                                                               \
        VP_DISPATCH_DERIVATIVE(VP_GRAD_LOOP)                                                \
    }                                                                                       \
                                                                                            \
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
    }                                                                                       \
                                                                                            \
    VP_CLONES void vp_activation_apply_##SUFFIX(int kind, double p0, double p1,             \
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
    _Pragma("omp simd") for (ptrdiff_t j = 0; j < cols; j++) ar[j] = f(zr[j], p0, p1)
/* dz = g * f'(z) */
#define VP_GRAD_LOOP(f)                                                      \
    _Pragma("omp simd") for (ptrdiff_t i = 0; i < n; i++) out[i] = gg[i] * f(zz[i], p0, p1)
/* out = f(in) */
#define VP_MAP_LOOP(f)                                                       \
    _Pragma("omp simd") for (ptrdiff_t i = 0; i < n; i++) out[i] = f(in[i], p0, p1)

VP_DEFINE_EPILOGUES(float, f32)
VP_DEFINE_EPILOGUES(double, f64)
