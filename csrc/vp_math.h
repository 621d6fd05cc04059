/* Branch-free double-precision exp, expm1, log1p, erfc and the logistic function.
 *
 * Why not libm: a scalar call of tanh or erfc per element costs several times the matrix
 * product the epilogue follows. These are written as straight-line arithmetic with
 * selects, so the compiler vectorizes the loops that inline them. Accuracy: a few ulp in
 * double (tests compare with numpy and scipy at 1e-13 relative); float kernels compute
 * in double and round once.
 *
 * Every function propagates NaN and handles +-inf without forming inf * 0.
 */
#ifndef VP_MATH_H
#define VP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Forced inlining: the loops of csrc/vp_activations.c are compiled once per instruction
 * set (target attributes), and a call left out of line would make a loop scalar. */
#if defined(__GNUC__) || defined(__clang__)
#define VP_INLINE static inline __attribute__((always_inline))
#else
#define VP_INLINE static inline
#endif

#include "vp_erfc_coeffs.h"

#define VP_LOG2E 1.4426950408889634074
#define VP_LN2_HI 6.93147180369123816490e-01 /* ln 2 split so k * hi is exact */
#define VP_LN2_LO 1.90821492927058770002e-10
#define VP_SHIFTER 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer */
#define VP_INV_SQRT2 0.70710678118654752440
#define VP_INV_SQRT_2PI 0.39894228040143267794
#define VP_EXP_MIN (-708.0) /* below: exp underflows to the subnormal range; return 0 */
#define VP_EXP_MAX 709.78

/* 2^(k - 1) for kd = k + VP_SHIFTER, built from the exponent bits (k - 1 in [-1022, 1023]). */
VP_INLINE double vp_pow2_km1(double kd)
{
    uint64_t bits;
    double r;
    memcpy(&bits, &kd, sizeof bits);
    bits = (bits + 1022u) << 52;
    memcpy(&r, &bits, sizeof r);
    return r;
}

/* expm1(r) for |r| <= ln(2)/2: Taylor to degree 13, truncation below 2e-16 relative. */
VP_INLINE double vp_expm1_reduced_p(double r, int lo)
{
    if (lo) { /* degree 9: truncation 0.347^9 / 10! < 3e-10 relative; degree 7 was
               * too coarse where gelu' cancels to zero (x near -0.75) */
        double q = 1.0 / 362880.0;
        q = q * r + 1.0 / 40320.0;
        q = q * r + 1.0 / 5040.0;
        q = q * r + 1.0 / 720.0;
        q = q * r + 1.0 / 120.0;
        q = q * r + 1.0 / 24.0;
        q = q * r + 1.0 / 6.0;
        q = q * r + 0.5;
        q = q * r + 1.0;
        return q * r;
    }
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    return p * r;
}

/* exp(x): 0 below VP_EXP_MIN, inf above VP_EXP_MAX, NaN for NaN. */
VP_INLINE double vp_exp_p(double x, int lo)
{
    double xc = x < VP_EXP_MIN ? VP_EXP_MIN : x;
    xc = xc > VP_EXP_MAX ? VP_EXP_MAX : xc;
    double kd = xc * VP_LOG2E + VP_SHIFTER;
    double k = kd - VP_SHIFTER;
    double r = (xc - k * VP_LN2_HI) - k * VP_LN2_LO;
    double e = 2.0 * vp_pow2_km1(kd) * (1.0 + vp_expm1_reduced_p(r, lo));
    e = x < VP_EXP_MIN ? 0.0 : e;
    return x > VP_EXP_MAX ? INFINITY : e;
}

/* expm1(x) for x <= 0 (the only range the activations need): accurate near 0. */
VP_INLINE double vp_expm1_neg_p(double x, int lo)
{
    double xc = x < -40.0 ? -40.0 : x; /* e^-40 is below half an ulp of 1 */
    double kd = xc * VP_LOG2E + VP_SHIFTER;
    double k = kd - VP_SHIFTER;
    double r = (xc - k * VP_LN2_HI) - k * VP_LN2_LO;
    double s = 2.0 * vp_pow2_km1(kd);
    double em1 = s * vp_expm1_reduced_p(r, lo) + (s - 1.0); /* exact r-part when k = 0 */
    return x < -40.0 ? -1.0 : em1;
}

/* log1p(u) for u in [0, 1] as 2 atanh(u / (2 + u)); s <= 1/3, so 17 terms of the
 * series in s^2 leave a truncation below 1e-18 relative. */
VP_INLINE double vp_log1p_unit_p(double u, int lo)
{
    double s = u / (2.0 + u);
    double s2 = s * s;
    if (lo) { /* 9 terms: truncation (1/9)^9 / 19 < 2e-10 relative, enough for float */
        double q = 1.0 / 17.0;
        q = q * s2 + 1.0 / 15.0;
        q = q * s2 + 1.0 / 13.0;
        q = q * s2 + 1.0 / 11.0;
        q = q * s2 + 1.0 / 9.0;
        q = q * s2 + 1.0 / 7.0;
        q = q * s2 + 1.0 / 5.0;
        q = q * s2 + 1.0 / 3.0;
        q = q * s2 + 1.0;
        return 2.0 * s * q;
    }
    double p = 1.0 / 33.0;
    p = p * s2 + 1.0 / 31.0;
    p = p * s2 + 1.0 / 29.0;
    p = p * s2 + 1.0 / 27.0;
    p = p * s2 + 1.0 / 25.0;
    p = p * s2 + 1.0 / 23.0;
    p = p * s2 + 1.0 / 21.0;
    p = p * s2 + 1.0 / 19.0;
    p = p * s2 + 1.0 / 17.0;
    p = p * s2 + 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    return 2.0 * s * p;
}

/* The logistic function and its slope from e = exp(-|x|) in (0, 1]: no overflow, and
 * relative accuracy in both tails. */
typedef struct {
    double value; /* sigmoid(x) */
    double slope; /* sigmoid(x) * sigmoid(-x) */
} vp_logistic;

VP_INLINE vp_logistic vp_sigmoid_p(double x, int lo)
{
    double e = vp_exp_p(-fabs(x), lo);
    double inv = 1.0 / (1.0 + e);
    vp_logistic out;
    out.value = x >= 0.0 ? inv : e * inv;
    out.value = x != x ? x : out.value;
    out.slope = e * inv * inv;
    return out;
}

/* Upper normal tail Q(a) = P(Z > a) = erfc(a / sqrt 2) / 2 for a >= 0 (a may be NaN),
 * and exp(-a^2 / 2), which it is built on and gelu' needs too.
 * erfc(y) = exp(-y^2) / (1 + 2y) * f(t), t = (y - K) / (y + K) (Schonfelder 1978), f a
 * Chebyshev series written as a polynomial in t (csrc/vp_erfc_coeffs.h). a is clipped
 * at 40: Q(40) is below the smallest double. */
typedef struct {
    double tail;    /* Q(a) = density * ratio */
    double density; /* exp(-min(a, 40)^2 / 2) */
    double ratio;   /* Q(a) / density, a Mills ratio over sqrt(2 pi) */
} vp_normal_tail;

VP_INLINE vp_normal_tail vp_normal_tail_p(double a, int lo)
{
    double ac = a > 40.0 ? 40.0 : a;
    double y = ac * VP_INV_SQRT2;
    double w = 1.0 + 2.0 * y;
    double t, inv_w;
    if (lo) { /* float data: one division for both, a few ulp of double more */
        double d = 1.0 / ((y + VP_ERFC_K) * w);
        t = (y - VP_ERFC_K) * w * d;
        inv_w = (y + VP_ERFC_K) * d;
    } else { /* double data: each quotient rounded once (gelu' cancels near x = -0.75) */
        t = (y - VP_ERFC_K) / (y + VP_ERFC_K);
        inv_w = 1.0 / w;
    }
    double series = lo ? vp_erfc_series_lo(t) : vp_erfc_series(t);
    vp_normal_tail out;
    out.density = vp_exp_p(-0.5 * ac * ac, lo);
    out.ratio = 0.5 * inv_w * series;
    out.tail = out.density * out.ratio;
    return out;
}

VP_INLINE double vp_normal_upper_tail_p(double a, int lo) { return vp_normal_tail_p(a, lo).tail; }

/* The standard normal CDF Phi(x). */
VP_INLINE double vp_normal_cdf_p(double x, int lo)
{
    double tail = vp_normal_upper_tail_p(fabs(x), lo);
    return x > 0.0 ? 1.0 - tail : tail;
}

/* The double-accuracy forms (lo = 0). lo = 1, a compile-time constant in every loop of
 * csrc/vp_activations.c that reads float data, truncates the series where float data
 * cannot see the difference (each truncation below 3e-10 relative, far inside the 1e-6
 * contract): fewer terms, faster float loops. */
VP_INLINE double vp_exp(double x) { return vp_exp_p(x, 0); }
VP_INLINE double vp_expm1_neg(double x) { return vp_expm1_neg_p(x, 0); }
VP_INLINE double vp_log1p_unit(double u) { return vp_log1p_unit_p(u, 0); }
VP_INLINE vp_logistic vp_sigmoid(double x) { return vp_sigmoid_p(x, 0); }
VP_INLINE double vp_normal_cdf(double x) { return vp_normal_cdf_p(x, 0); }

#endif /* VP_MATH_H */
