# Included by _kernels.pyx (textually part of that module: its imports, helpers and
# directives apply). The fused dense backward pass; docs/kernels.md, "Tile grid" and
# "The weight gradient".

# ------------------------------------------------------------------------ backward
cdef void _backward_run(floating tag, Py_buffer *v, int batch, int n_in, int n_out,
                        int kind, double p0, double p1, int block_rows, int n_blocks,
                        int dx_tile_rows, int dx_tile_cols, int dx_ct, int n_dx,
                        int dw_tile_rows, int dw_tile_cols, int dw_ct, int n_tiles,
                        int dw_blocks, int block_threads, int tile_threads,
                        int reduce_threads) noexcept nogil:
    """The three phases over the checked buffers v (backward's order); tag: the dtype.
    With ``dw_blocks > 1`` each dW tile is split along the batch into that many row
    blocks (fixed by the shape), written to ``v[8]`` (dw_blocks, n_in, n_out) and summed
    in block order afterwards, so that a small dW over a long batch (a convolution's
    taps x channels) is not one thread's work and the bits do not depend on the thread
    count."""
    cdef const floating *xp = <const floating *>v[0].buf
    cdef const floating *wp = <const floating *>v[1].buf
    cdef const floating *zp = <const floating *>v[2].buf
    cdef const floating *gp = <const floating *>v[3].buf
    cdef floating *dzp = <floating *>v[4].buf
    cdef floating *dxp = <floating *>v[5].buf
    cdef floating *dwp = <floating *>v[6].buf
    cdef double *bpp = <double *>v[7].buf
    cdef floating *pwp = <floating *>v[8].buf
    cdef int blk, r0, rows, t, u, i0, c0, cols, kb, k0, kn, i, j
    cdef int inner = (batch + dw_blocks - 1) // dw_blocks
    cdef ptrdiff_t off, plane = <ptrdiff_t>n_in * n_out
    cdef double acc
    for blk in prange(n_blocks, num_threads=block_threads, schedule="static"):
        r0 = blk * block_rows
        rows = min(block_rows, batch - r0)
        off = <ptrdiff_t>r0 * n_out
        _backward_epilogue(kind, p0, p1, zp + off, gp + off, dzp + off,
                           <ptrdiff_t>rows * n_out)
        _column_sums(dzp + off, n_out, rows, n_out, bpp + <ptrdiff_t>blk * n_out)

    for t in prange(n_tiles, num_threads=tile_threads, schedule="dynamic"):
        if t < n_dx:
            # dX[r0:, c0:] = dz[r0:] @ w[c0:]^T  (column-major: w'^T-op times dz^T)
            r0 = (t // dx_ct) * dx_tile_rows
            c0 = (t % dx_ct) * dx_tile_cols
            rows = min(dx_tile_rows, batch - r0)
            cols = min(dx_tile_cols, n_in - c0)
            _gemm(c'T', c'N', cols, rows, n_out, wp + <ptrdiff_t>c0 * n_out, n_out,
                  dzp + <ptrdiff_t>r0 * n_out, n_out, dxp + <ptrdiff_t>r0 * n_in + c0, n_in)
        else:
            # dW[i0:, c0:] = x[k0:, i0:]^T @ dz[k0:, c0:] over row block kb of the batch
            # (column-major: dz^T x), into dW itself or block kb's partial
            u = t - n_dx
            kb = u % dw_blocks
            u = u // dw_blocks
            i0 = (u // dw_ct) * dw_tile_rows
            c0 = (u % dw_ct) * dw_tile_cols
            rows = min(dw_tile_rows, n_in - i0)
            cols = min(dw_tile_cols, n_out - c0)
            k0 = kb * inner
            kn = min(inner, batch - k0)
            if dw_blocks == 1:
                _gemm(c'N', c'T', cols, rows, batch, dzp + c0, n_out, xp + i0, n_in,
                      dwp + <ptrdiff_t>i0 * n_out + c0, n_out)
            elif kn <= 0:
                for i in range(rows):
                    for j in range(cols):
                        pwp[kb * plane + <ptrdiff_t>(i0 + i) * n_out + c0 + j] = 0
            else:
                _gemm(c'N', c'T', cols, rows, kn, dzp + <ptrdiff_t>k0 * n_out + c0, n_out,
                      xp + <ptrdiff_t>k0 * n_in + i0, n_in,
                      pwp + kb * plane + <ptrdiff_t>i0 * n_out + c0, n_out)

    if dw_blocks > 1:  # the blocks' partials, summed in block order (in double)
        for i in prange(n_in, num_threads=reduce_threads, schedule="static"):
            for j in range(n_out):
                acc = 0.0
                for kb in range(dw_blocks):
                    acc = acc + pwp[kb * plane + <ptrdiff_t>i * n_out + j]
                dwp[<ptrdiff_t>i * n_out + j] = <floating>acc


_BACKWARD_NAMES = ("x", "w", "z", "grad_a", "grad_z", "grad_x", "grad_w", "bias_partials",
                   "dw_partials")


def backward(x, w, z, grad_a, grad_z, grad_x, grad_w, bias_partials, kind, p0, p1,
             block_rows, dx_tile_rows, dx_tile_cols, dw_tile_rows, dw_tile_cols, n_threads,
             dw_blocks=1, dw_partials=None):
    """Three phases: dz = g * phi'(z) with per-row-block bias partials; then one parallel
    loop over the dX tiles (dz @ w^T, by rows and input columns) and the dW tiles
    (x^T @ dz, by input rows and output columns, and by ``dw_blocks`` row blocks of the
    batch); then, with ``dw_blocks > 1``, the blocks' partials summed in block order.

    Inputs x (batch, n_in), w (n_in, n_out), z and grad_a (batch, n_out); outputs of x's
    dtype grad_z (batch, n_out), grad_x (batch, n_in), grad_w (n_in, n_out), and float64
    bias_partials (ceil(batch / block_rows), n_out), the column sums of dz per row block;
    dw_partials (dw_blocks, n_in, n_out) of x's dtype, a workspace (None: dw_blocks 1).
    """
    cdef Py_buffer v[9]
    cdef int held = 0, size, k
    cdef int c_kind = _int_arg(kind, "kind (activation id)", 0, VP_N_ACTIVATIONS - 1)
    cdef double c_p0 = _real_arg(p0, "p0"), c_p1 = _real_arg(p1, "p1")
    cdef int c_block = _int_arg(block_rows, "block_rows", 1, INT_MAX)
    cdef int dxr = _int_arg(dx_tile_rows, "dx_tile_rows", 1, INT_MAX)
    cdef int dxc = _int_arg(dx_tile_cols, "dx_tile_cols", 1, INT_MAX)
    cdef int dwr = _int_arg(dw_tile_rows, "dw_tile_rows", 1, INT_MAX)
    cdef int dwc = _int_arg(dw_tile_cols, "dw_tile_cols", 1, INT_MAX)
    cdef int threads = _int_arg(n_threads, "n_threads", 1, INT_MAX)
    cdef int c_dw_blocks = _int_arg(dw_blocks, "dw_blocks", 1, INT_MAX)
    cdef Py_ssize_t batch, n_in, n_out
    cdef long long n_blocks, dx_ct, dw_ct, n_dx, n_tiles
    cdef int block_threads, tile_threads, reduce_threads
    if dw_partials is None and c_dw_blocks != 1:
        raise ValueError("dw_partials: a (dw_blocks, n_in, n_out) workspace is needed when "
                         "dw_blocks > 1")
    v[8].buf = NULL  # no workspace: dW written in place (dw_blocks 1)
    v[8].len = 0
    try:
        size = _take(&v[0], x, "x", 2, False, 0, ""); held += 1
        for k, arr, out in ((1, w, False), (2, z, False), (3, grad_a, False),
                            (4, grad_z, True), (5, grad_x, True), (6, grad_w, True)):
            _take(&v[k], arr, _BACKWARD_NAMES[k], 2, out, size, "x"); held += 1
        _take(&v[7], bias_partials, "bias_partials", 2, True, 8, "the partial sums (float64)")
        held += 1
        if dw_partials is not None:
            _take(&v[8], dw_partials, "dw_partials", 3, True, size, "x"); held += 1
        batch, n_in, n_out = v[0].shape[0], v[0].shape[1], v[1].shape[1]
        n_blocks = _ceil_div(batch, c_block)
        _shape(v, _BACKWARD_NAMES, 1, n_in, -1, -1, f"({n_in}, n_out): x has {n_in} columns")
        for k in (2, 3, 4):
            _shape(v, _BACKWARD_NAMES, k, batch, n_out, -1, f"(batch, n_out) = {(batch, n_out)}")
        _shape(v, _BACKWARD_NAMES, 5, batch, n_in, -1, f"x's shape {(batch, n_in)}")
        _shape(v, _BACKWARD_NAMES, 6, n_in, n_out, -1, f"w's shape {(n_in, n_out)}")
        _shape(v, _BACKWARD_NAMES, 7, n_blocks, n_out, -1,
               f"(ceil(batch / block_rows), n_out) = {(n_blocks, n_out)}")
        if dw_partials is not None and (v[8].shape[0] != c_dw_blocks
                                        or v[8].shape[1] != n_in or v[8].shape[2] != n_out):
            raise ValueError(f"dw_partials must have shape (dw_blocks, n_in, n_out) = "
                             f"{(c_dw_blocks, n_in, n_out)}")
        dx_ct = _ceil_div(n_in, dxc)
        dw_ct = _ceil_div(n_out, dwc)
        n_dx = _ceil_div(batch, dxr) * dx_ct
        n_tiles = n_dx + _ceil_div(n_in, dwr) * dw_ct * <long long>c_dw_blocks
        if n_tiles > INT_MAX:
            raise ValueError("dx_tile_rows, dx_tile_cols, dw_tile_rows, dw_tile_cols: more "
                             "than 2**31 - 1 tiles")
        _disjoint(v, _BACKWARD_NAMES, 9 if dw_partials is not None else 8, 4)
        with nogil:
            block_threads = <int>max(1, min(threads, n_blocks))
            tile_threads = <int>max(1, min(threads, n_tiles))
            reduce_threads = <int>max(1, min(threads, n_in))
            if size == 4:
                _backward_run(<float>0, v, <int>batch, <int>n_in, <int>n_out, c_kind, c_p0,
                              c_p1, c_block, <int>n_blocks, dxr, dxc, <int>dx_ct, <int>n_dx,
                              dwr, dwc, <int>dw_ct, <int>n_tiles, c_dw_blocks, block_threads,
                              tile_threads, reduce_threads)
            else:
                _backward_run(<double>0, v, <int>batch, <int>n_in, <int>n_out, c_kind, c_p0,
                              c_p1, c_block, <int>n_blocks, dxr, dxc, <int>dx_ct, <int>n_dx,
                              dwr, dwc, <int>dw_ct, <int>n_tiles, c_dw_blocks, block_threads,
                              tile_threads, reduce_threads)
    finally:
        _release(v, held)
