"""Triton kernels of ``katbench::group_rational`` (device code; launched by
:mod:`katbench.ops.triton_backend`), with the contract of ``csrc/group_rational_cuda.cu``.

F(x + bias) = P / Q per channel group, P = a_0 + ... + a_m x^m, Q = 1 + sum_k |b_k||x|^k
(``sum_abs``) or 1 + |sum_k b_k x^k| (``abs_sum``); the element math is that of
``csrc/rational_math.h`` (Horner from the leading coefficient, one reciprocal, dL/d|b_k| signed
once after the sums). Arithmetic is float32 (float64 for float64 inputs); elements with
|x| > 4096, whose float32 powers could overflow, are evaluated in float64 (finite for every
finite float input). Orders are compile-time constants: each (m, n) compiles on first use, with
no zero padding.

x is viewed as (rows, D) and tiled as [rows, packs, VEC]: a pack is VEC channels (16 bytes) of
one group, so a thread holds one set of coefficients and sums its gradient terms over a pack in
registers. The backward uses no atomics: each program accumulates the coefficient gradients of
its packs over its strided rows and writes one partial per (slot, program, pack), and the bias
gradient one per (program, column); :func:`reduce_kernel`, one program per coefficient, sums
each coefficient's partials (its group's packs, all packs for a shared numerator) and each
column's in a fixed order.
"""

from __future__ import annotations

import triton
import triton.language as tl

LARGE_INPUT = tl.constexpr(4096.0)  # csrc/rational_math.h's kLargeInput


@triton.jit
def _plain_tile(x, DOUBLE: tl.constexpr, CHECK_LARGE: tl.constexpr):
    """Whether a tile runs the common float32 (or float64) path: float64, or no |x| > LARGE_INPUT
    (a tile-wide reduction). ``CHECK_LARGE=False`` skips the test, for timing what it costs only:
    large inputs then overflow."""
    if DOUBLE or not CHECK_LARGE:
        return True
    return tl.max((tl.abs(x) > LARGE_INPUT).to(tl.int32)) == 0


@triton.jit
def _horner(cs, t, D: tl.constexpr):
    """cs[0] + cs[1] t + ... + cs[D] t^D, from the leading coefficient."""
    q = tl.broadcast_to(cs[D], t.shape)
    for j in tl.static_range(D - 1, -1, -1):
        q = q * t + cs[j]
    return q


@triton.jit
def _horner_derivative(cs, t, D: tl.constexpr):
    """The polynomial of :func:`_horner` and its derivative in one interleaved pass."""
    q = tl.broadcast_to(cs[D], t.shape)
    dq = tl.full(q.shape, 0.0, q.dtype)
    if D > 0:
        dq = q
        q = q * t + cs[D - 1]
        for j in tl.static_range(D - 2, -1, -1):
            dq = dq * t + q
            q = q * t + cs[j]
    return q, dq


@triton.jit
def _coefficients(source, dtype: tl.constexpr, M: tl.constexpr, N: tl.constexpr,
                  SUM_ABS: tl.constexpr):
    """(a_0..a_m), (c_1..c_n) of each pack's group as [1, PACKS, 1] tensors, c = |b| for
    sum_abs. ``source`` is (numerator, denominator, group of each pack, pack inside the width,
    numerator and denominator group strides)."""
    num_ptr, den_ptr, group, valid, num_stride, den_stride = source
    a = ()
    for j in tl.static_range(M + 1):
        a = a + (tl.load(num_ptr + group * num_stride + j, mask=valid, other=0.0)
                 .to(dtype)[None, :, None],)
    c = ()
    for k in tl.static_range(N):
        b = tl.load(den_ptr + group * den_stride + k, mask=valid, other=0.0).to(dtype)
        c = c + ((tl.abs(b) if SUM_ABS else b)[None, :, None],)
    return a, c


@triton.jit
def _rational(x, a, c, M: tl.constexpr, N: tl.constexpr, SUM_ABS: tl.constexpr):
    """F(x) = P(x) / (1 + |u h(u)|), inner(u) = u h(u), u = |x| (sum_abs) or x."""
    p = _horner(a, x, M)
    u = tl.abs(x) if SUM_ABS else x
    inner = u * _horner(c, u, N - 1)
    return p / (1.0 + (inner if SUM_ABS else tl.abs(inner)))


@triton.jit
def _rational_backward(x, g, a, c, M: tl.constexpr, N: tl.constexpr, SUM_ABS: tl.constexpr):
    """(dL/dx, F, gradient terms): dL/da_j = g x^j / Q, dL/dc_k = -g F s u^k / Q (c = |b| for
    sum_abs, signed by the reduction), dL/dx = g (P' - F dQ/dx) / Q, s = sign(inner)."""
    p, dp = _horner_derivative(a, x, M)
    u = tl.abs(x) if SUM_ABS else x
    h, dh = _horner_derivative(c, u, N - 1)
    inner = h * u
    dinner = dh * u + h
    if SUM_ABS:  # inner >= 0: Q = 1 + inner; dQ/dx = sign(x) inner'(|x|), 0 at x = 0
        s = tl.full(x.shape, 1.0, x.dtype)
        dq_dx = tl.where(x > 0, dinner, tl.where(x < 0, -dinner, 0.0))
    else:
        s = tl.where(inner > 0, 1.0, tl.where(inner < 0, -1.0, 0.0)).to(x.dtype)
        dq_dx = s * dinner
    rq = 1.0 / (1.0 + s * inner)
    f = p * rq
    gq = g * rq
    gf = -gq * f * s
    powers = (tl.full(x.shape, 1.0, x.dtype), x)  # x^j, each one multiply of two lower powers
    for j in tl.static_range(2, (M if M > N else N) + 1):
        powers = powers + (powers[j // 2] * powers[j - j // 2],)
    terms = (gq,)
    for j in tl.static_range(1, M + 1):
        terms = terms + (gq * powers[j],)
    for k in tl.static_range(1, N + 1):  # u^k: x^k for even k, u x^(k-1) for odd k
        terms = terms + (gf * (u * powers[k - 1] if k % 2 == 1 else powers[k]),)
    return gq * (dp - f * dq_dx), f, terms


# A float32 tile holding any |x| > LARGE_INPUT (rare) runs again lane by lane (the elements at
# one position of every pack), each element in float32 or, if large, float64, loading its
# inputs and coefficients inside the loop: nothing of the common path stays live there, so the
# rare path does not raise the kernel's register count (which sets its occupancy).
@triton.jit
def _lane_inputs(x_ptr, bias_ptr, source, at, mask, width, M: tl.constexpr, N: tl.constexpr,
                 SUM_ABS: tl.constexpr, HAS_BIAS: tl.constexpr):
    """x (+ bias) at offsets ``at`` in float32, and the float32 and float64 coefficients."""
    x = tl.load(x_ptr + at, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(bias_ptr + at % width, mask=mask, other=0.0)
    a, c = _coefficients(source, tl.float32, M, N, SUM_ABS)
    return x, a, c, _widen(a, M + 1), _widen(c, N)


@triton.jit
def _widen(cs, D: tl.constexpr):
    """The coefficients in float64."""
    out = ()
    for j in tl.static_range(D):
        out = out + (cs[j].to(tl.float64),)
    return out


@triton.jit
def _forward_lanes(x_ptr, y_ptr, bias_ptr, source, base, mask, width, M: tl.constexpr,
                   N: tl.constexpr, SUM_ABS: tl.constexpr, HAS_BIAS: tl.constexpr,
                   VEC: tl.constexpr):
    """Writes F of a tile with large inputs, lane by lane (see above)."""
    for v in range(VEC):
        x, a, c, a64, c64 = _lane_inputs(x_ptr, bias_ptr, source, base + v, mask, width, M, N,
                                         SUM_ABS, HAS_BIAS)
        y = tl.where(tl.abs(x) > LARGE_INPUT,
                     _rational(x.to(tl.float64), a64, c64, M, N, SUM_ABS).to(tl.float32),
                     _rational(x, a, c, M, N, SUM_ABS))
        tl.store(y_ptr + base + v, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_lanes(grad_ptr, x_ptr, dx_ptr, y_ptr, bias_ptr, source, base, mask, width, sums,
                    column_sums, M: tl.constexpr, N: tl.constexpr, SUM_ABS: tl.constexpr,
                    HAS_BIAS: tl.constexpr, WRITE_Y: tl.constexpr, VEC: tl.constexpr):
    """Writes dL/dx (and F) of a tile with large inputs lane by lane (see above); returns the
    sums and the column sums with its terms added."""
    lane = tl.arange(0, VEC)[None, None, :]
    for v in range(VEC):
        x, a, c, a64, c64 = _lane_inputs(x_ptr, bias_ptr, source, base + v, mask, width, M, N,
                                         SUM_ABS, HAS_BIAS)
        g = tl.load(grad_ptr + base + v, mask=mask, other=0.0).to(tl.float32)
        large = tl.abs(x) > LARGE_INPUT
        dx64, f64, terms64 = _rational_backward(x.to(tl.float64), g.to(tl.float64), a64, c64,
                                                M, N, SUM_ABS)
        dx, f, terms = _rational_backward(x, g, a, c, M, N, SUM_ABS)
        dx = tl.where(large, dx64.to(tl.float32), dx)
        tl.store(dx_ptr + base + v, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        if WRITE_Y:
            f = tl.where(large, f64.to(tl.float32), f)
            tl.store(y_ptr + base + v, f.to(y_ptr.dtype.element_ty), mask=mask)
        added = ()
        for j in tl.static_range(M + 1 + N):
            term = tl.where(large, terms64[j].to(tl.float32), terms[j])
            added = added + (sums[j] + tl.sum(term, axis=2),)
        sums = added
        if HAS_BIAS:
            column_sums += tl.where(lane == v, dx, 0.0)
    return sums, column_sums


@triton.jit
def _tile(r0, rows, width, pack, VEC: tl.constexpr, BLOCK_R: tl.constexpr):
    """Offsets of lane 0 ([BLOCK_R, PACKS, 1]) of rows r0.. and the packs, and their mask."""
    r = r0 + tl.arange(0, BLOCK_R)
    base = r.to(tl.int64)[:, None, None] * width + pack[None, :, None] * VEC
    return base, (r < rows)[:, None, None] & (pack * VEC < width)[None, :, None]


@triton.jit
def forward_kernel(x_ptr, y_ptr, num_ptr, den_ptr, bias_ptr, rows, width, group_width,
                    num_stride, den_stride, M: tl.constexpr, N: tl.constexpr,
                    SUM_ABS: tl.constexpr, HAS_BIAS: tl.constexpr, DOUBLE: tl.constexpr,
                    VEC: tl.constexpr, PACKS: tl.constexpr, BLOCK_R: tl.constexpr,
                    CHECK_LARGE: tl.constexpr):
    """Program (i, j) writes F of packs j*PACKS.. on row tiles i, i + programs, ... (one tile
    when the grid has one program per tile; a persistent grid loads its coefficients once)."""
    dtype: tl.constexpr = tl.float64 if DOUBLE else tl.float32
    pack = tl.program_id(1) * PACKS + tl.arange(0, PACKS)
    source = (num_ptr, den_ptr, pack * VEC // group_width, pack * VEC < width, num_stride,
              den_stride)
    a, c = _coefficients(source, dtype, M, N, SUM_ABS)
    if HAS_BIAS:
        column = pack[:, None] * VEC + tl.arange(0, VEC)[None, :]
        shift = tl.load(bias_ptr + column, mask=column < width, other=0.0)[None, :, :]
    for r0 in range(tl.program_id(0) * BLOCK_R, rows, tl.num_programs(0) * BLOCK_R):
        base, lane_mask = _tile(r0, rows, width, pack, VEC, BLOCK_R)
        offsets = base + tl.arange(0, VEC)[None, None, :]
        mask = tl.broadcast_to(lane_mask, offsets.shape)
        x = tl.load(x_ptr + offsets, mask=mask, other=0.0).to(dtype)
        if HAS_BIAS:
            x += shift
        if _plain_tile(x, DOUBLE, CHECK_LARGE):
            tl.store(y_ptr + offsets,
                     _rational(x, a, c, M, N, SUM_ABS).to(y_ptr.dtype.element_ty), mask=mask)
        else:
            _forward_lanes(x_ptr, y_ptr, bias_ptr, source, base, lane_mask, width, M, N,
                           SUM_ABS, HAS_BIAS, VEC)


@triton.jit
def backward_kernel(grad_ptr, x_ptr, dx_ptr, y_ptr, partial_ptr, bias_partial_ptr, num_ptr,
                     den_ptr, bias_ptr, rows, width, group_width, num_stride, den_stride,
                     M: tl.constexpr, N: tl.constexpr, SUM_ABS: tl.constexpr,
                     HAS_BIAS: tl.constexpr, WRITE_Y: tl.constexpr, DOUBLE: tl.constexpr,
                     VEC: tl.constexpr, PACKS: tl.constexpr, BLOCK_R: tl.constexpr,
                     UNROLL: tl.constexpr, CHECK_LARGE: tl.constexpr):
    dtype: tl.constexpr = tl.float64 if DOUBLE else tl.float32
    program, programs = tl.program_id(0), tl.num_programs(0)
    pack = tl.program_id(1) * PACKS + tl.arange(0, PACKS)
    valid = pack * VEC < width
    column = pack[:, None] * VEC + tl.arange(0, VEC)[None, :]
    source = (num_ptr, den_ptr, pack * VEC // group_width, valid, num_stride, den_stride)
    a, c = _coefficients(source, dtype, M, N, SUM_ABS)
    if HAS_BIAS:
        shift = tl.load(bias_ptr + column, mask=valid[:, None], other=0.0)[None, :, :]
    sums = ()
    for _ in tl.static_range(M + 1 + N):
        sums = sums + (tl.full([BLOCK_R, PACKS], 0.0, dtype),)
    column_sums = tl.full([BLOCK_R, PACKS, VEC], 0.0, dtype)  # dL/dx by column: the bias gradient
    for r0 in range(program * BLOCK_R * UNROLL, rows, programs * BLOCK_R * UNROLL):
        tiles = ()
        for i in tl.static_range(UNROLL):  # all loads of the iteration issued first
            base, lane_mask = _tile(r0 + i * BLOCK_R, rows, width, pack, VEC, BLOCK_R)
            offsets = base + tl.arange(0, VEC)[None, None, :]
            mask = tl.broadcast_to(lane_mask, offsets.shape)
            tiles = tiles + ((base, lane_mask, offsets, mask,
                              tl.load(x_ptr + offsets, mask=mask, other=0.0),
                              tl.load(grad_ptr + offsets, mask=mask, other=0.0)),)
        for i in tl.static_range(UNROLL):
            base, lane_mask, offsets, mask, x, g = tiles[i]
            x = x.to(dtype)
            if HAS_BIAS:
                x += shift
            g = g.to(dtype)
            if _plain_tile(x, DOUBLE, CHECK_LARGE):
                dx, f, terms = _rational_backward(x, g, a, c, M, N, SUM_ABS)
                tl.store(dx_ptr + offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)
                if WRITE_Y:
                    tl.store(y_ptr + offsets, f.to(y_ptr.dtype.element_ty), mask=mask)
                summed = ()
                for j in tl.static_range(M + 1 + N):  # over the pack: in registers
                    summed = summed + (sums[j] + tl.sum(terms[j], axis=2),)
                sums = summed
                if HAS_BIAS:
                    column_sums += dx
            else:
                sums, column_sums = _backward_lanes(grad_ptr, x_ptr, dx_ptr, y_ptr, bias_ptr,
                                                    source, base, lane_mask, width, sums,
                                                    column_sums, M, N, SUM_ABS, HAS_BIAS,
                                                    WRITE_Y, VEC)
    packs = width // VEC
    for j in tl.static_range(M + 1 + N):
        tl.store(partial_ptr + (j * programs + program) * packs + pack, tl.sum(sums[j], axis=0),
                 mask=valid)
    if HAS_BIAS:
        tl.store(bias_partial_ptr + program * width + column, tl.sum(column_sums, axis=0),
                 mask=valid[:, None])


@triton.jit
def reduce_kernel(partial_ptr, bias_partial_ptr, den_ptr, grad_num_ptr, grad_den_ptr,
                  grad_bias_ptr, programs, width, packs_per_group, groups, den_stride,
                  VEC: tl.constexpr, M: tl.constexpr, N: tl.constexpr, SUM_ABS: tl.constexpr,
                  SHARED_NUMERATOR: tl.constexpr, HAS_BIAS: tl.constexpr,
                  BLOCK: tl.constexpr, BIAS_ROWS: tl.constexpr, BIAS_BLOCK: tl.constexpr):
    """One program per coefficient gradient, in the order of the flattened numerator gradient
    (one row when shared, else one per group) and then the denominator's: the sum of its slot's
    partials over the backward's programs and its group's packs (all packs for a shared
    numerator), BLOCK at a time; then, with a bias (``HAS_BIAS``: otherwise its pointers are
    None and the branch is not compiled), one program per BIAS_BLOCK columns of the bias
    gradient, BIAS_ROWS of the backward's programs at a time. Fixed order throughout."""
    pid = tl.program_id(0)
    packs = width // VEC
    numerators = (1 if SHARED_NUMERATOR else groups) * (M + 1)
    coefficients = numerators + groups * N
    if pid < coefficients:
        is_numerator = pid < numerators
        index = tl.where(is_numerator, pid, pid - numerators)  # in its flattened gradient
        order = tl.where(is_numerator, index % (M + 1), index % N)
        group = tl.where(is_numerator, index // (M + 1), index // N)
        slot = tl.where(is_numerator, order, M + 1 + order)
        count = packs_per_group
        first = group * packs_per_group
        if SHARED_NUMERATOR:
            count = tl.where(is_numerator, packs, packs_per_group)
            first = tl.where(is_numerator, 0, first)
        total = tl.full([BLOCK], 0.0, partial_ptr.dtype.element_ty)
        for e0 in range(0, programs * count, BLOCK):
            e = e0 + tl.arange(0, BLOCK)
            at = (slot * programs + e // count) * packs + first + e % count
            total += tl.load(partial_ptr + at, mask=e < programs * count, other=0.0)
        value = tl.sum(total, axis=0)
        tl.store(grad_num_ptr + index, value, mask=is_numerator)
        if SUM_ABS:  # dL/db = sign(b) dL/d|b|, +1 at b = 0
            b = tl.load(den_ptr + group * den_stride + order, mask=~is_numerator, other=0.0)
            value = tl.where(b < 0, -value, value)
        tl.store(grad_den_ptr + index, value, mask=~is_numerator)
    elif HAS_BIAS:
        columns = (pid - coefficients) * BIAS_BLOCK + tl.arange(0, BIAS_BLOCK)
        column_total = tl.full([BIAS_ROWS, BIAS_BLOCK], 0.0, partial_ptr.dtype.element_ty)
        for r0 in range(0, programs, BIAS_ROWS):
            row = r0 + tl.arange(0, BIAS_ROWS)
            column_total += tl.load(bias_partial_ptr + row[:, None] * width + columns[None, :],
                             mask=(row < programs)[:, None] & (columns < width)[None, :],
                             other=0.0)
        tl.store(grad_bias_ptr + columns, tl.sum(column_total, axis=0), mask=columns < width)
