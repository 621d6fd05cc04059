# Included by varprop/_kernels.pyx (same module): the activation loops alone, the pooled
# variance of measure, and the instruction-set level of the loops (docs/kernels.md).

#: Instruction-set levels of the activation loops, in order (csrc/vp_activations.h).
ISA_LEVELS = ("baseline", "avx2", "avx512")


def isa():
    """The instruction set the activation loops of this module use now (ISA_LEVELS)."""
    return ISA_LEVELS[vp_get_isa_level()]


def isa_available():
    """The levels this CPU and build can run, baseline first."""
    return ISA_LEVELS[:vp_isa_best() + 1]


def _set_isa(name):
    """Make the activation loops of this module use ``name`` (one of ISA_LEVELS) from now
    on; for tests (process-wide, not for concurrent callers). ValueError naming ``name``
    when it is unknown or the CPU cannot run it."""
    if name not in ISA_LEVELS:
        raise ValueError(f"name must be one of {ISA_LEVELS}, got {name!r}")
    if vp_set_isa_level(ISA_LEVELS.index(name)) < 0:
        raise ValueError(f"name={name!r}: this CPU (or build) runs only {isa_available()}")
    return name


# ---------------------------------------------------------------------- activations
_APPLY_NAMES = ("x", "out")


def activation_apply(x, out, kind, p0, p1, derivative):
    """out = phi(x) or phi'(x) with the C math of the kernels (for tests and for users
    who want the fast activation alone). x and out: 1-D, C-contiguous, of one dtype
    (float32 or float64) and length, and not overlapping (out is written)."""
    cdef Py_buffer v[2]
    cdef int held = 0, size
    cdef int c_kind = _int_arg(kind, "kind (activation id)", 0, VP_N_ACTIVATIONS - 1)
    cdef double c_p0 = _real_arg(p0, "p0"), c_p1 = _real_arg(p1, "p1")
    cdef bint deriv = derivative
    cdef ptrdiff_t n
    try:
        size = _take(&v[0], x, "x", 1, False, 0, ""); held += 1
        _take(&v[1], out, "out", 1, True, size, "x"); held += 1
        n = v[0].shape[0]
        _shape(v, _APPLY_NAMES, 1, n, -1, -1, f"({n},) like x")
        _disjoint(v, _APPLY_NAMES, 2, 1)
        if n == 0:
            return
        with nogil:
            if size == 4:
                vp_activation_apply_f32(c_kind, c_p0, c_p1, deriv, <const float *>v[0].buf,
                                        <float *>v[1].buf, n)
            else:
                vp_activation_apply_f64(c_kind, c_p0, c_p1, deriv, <const double *>v[0].buf,
                                        <double *>v[1].buf, n)
    finally:
        _release(v, held)


def pooled_var(x):
    """Variance (ddof 0) of all entries of a 1-D C-contiguous float32 or float64 array,
    accumulated in float64 in two passes and one fixed order (NaN when empty)."""
    cdef Py_buffer v[1]
    cdef int held = 0, size
    cdef ptrdiff_t n
    cdef double out
    try:
        size = _take(&v[0], x, "x", 1, False, 0, ""); held += 1
        n = v[0].shape[0]
        with nogil:
            if size == 4:
                out = vp_pooled_var_f32(<const float *>v[0].buf, n)
            else:
                out = vp_pooled_var_f64(<const double *>v[0].buf, n)
        return out
    finally:
        _release(v, held)
