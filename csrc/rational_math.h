// Element-wise math of the group-wise safe Padé activation, shared by the CPU and CUDA kernels.
//
//   F(x) = P(x) / Q(x),  P(x) = a_0 + a_1 x + ... + a_m x^m            (Horner)
//   sum_abs: Q(x) = 1 + sum_k |b_k| |x|^k     abs_sum: Q(x) = 1 + |sum_k b_k x^k|
//
// Both forms are written as Q = 1 + |inner(u)| with inner(u) = sum_k c_k u^k, where
// (u, c_k) = (|x|, |b_k|) for sum_abs and (x, b_k) for abs_sum. Gradients (paper, appendix E):
//   dF/da_j = x^j / Q
//   dF/db_k = -F / Q * sign(inner) * (sum_abs ? sign(b_k) |x|^k : x^k)
//   dF/dx   = (P'(x) - F * dQ/dx) / Q,  dQ/dx = sign(inner) * inner'(u) * (sum_abs ? sign(x) : 1)
// with sign(0) = 0 for sign(x) and, in abs_sum, sign(inner), as in PyTorch's autograd of abs
// (sum_abs has inner >= 0: its sign factor is 1). For d|b_k|/db_k
// the subgradient +1 is used at b_k = 0 (as the official kernels' copysign does), so a
// coefficient initialised to exactly zero, as in the identity and GELU fits, still learns.
//
// MM, NN are compile-time orders. Other orders (m <= MM, n <= NN) run with zero-padded
// coefficients: a zero leading coefficient changes neither P nor Q for finite x, and the gradient
// slots of padded coefficients are computed but dropped by the caller. The loops carry no
// data-dependent branches, so compilers vectorise them (CPU) and keep all state in registers (GPU).
#pragma once

#include <cmath>
#include <type_traits>

#if defined(__CUDACC__)
#define KATBENCH_HD __host__ __device__ __forceinline__
#else
#define KATBENCH_HD inline __attribute__((always_inline))
#endif
// Full unrolling of the fixed-capacity coefficient loops; GCC ignores `KATBENCH_UNROLL`.
#if defined(__CUDACC__) || defined(__clang__)
#define KATBENCH_UNROLL _Pragma("unroll")
#else
#define KATBENCH_UNROLL _Pragma("GCC unroll 16")
#endif

namespace katbench {

constexpr int kMaxNumeratorOrder = 8;
constexpr int kMaxDenominatorOrder = 8;
// Above this magnitude, float evaluation of x^8 could overflow: such elements are evaluated
// in double (finite for every finite float input), which costs nothing when none occur.
constexpr float kLargeInput = 4096.0f;

template <typename T>
KATBENCH_HD T sign_of(T v) {
  return static_cast<T>(v > T(0)) - static_cast<T>(v < T(0));
}

template <typename T>
KATBENCH_HD T abs_of(T v) {
  return std::fabs(v);
}

// n / q for the denominators Q >= 1. On the GPU in float this is n times the hardware
// reciprocal (MUFU.RCP, <= 1 ulp) instead of IEEE division's ~10-instruction sequence; Q >= 1
// also makes __fdividef's rescaling of tiny and huge denominators unnecessary (1/Q is never
// subnormal unless Q > 2^126, where flushing it to zero is within that rounding).
template <typename T>
KATBENCH_HD T divide(T n, T q) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<T, float>) {
    float r;
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(q));
    return n * r;
  }
#endif
  return n / q;
}

// Coefficients of one group in the arithmetic type: a[0..m], c[0..n-1] (|b| for sum_abs),
// (sign(b_k), needed by sum_abs gradients only, is read from b at the end: see
// apply_denominator_signs).
template <typename T, int MM, int NN>
struct GroupCoefficients {
  T a[MM + 1];
  T c[NN];
};

template <typename T, int MM, int NN, bool SUM_ABS, typename CT>
KATBENCH_HD void load_group(GroupCoefficients<T, MM, NN>& k, const CT* num, const CT* den,
                            int m, int n) {
  KATBENCH_UNROLL
  for (int j = 0; j <= MM; ++j) k.a[j] = j <= m ? static_cast<T>(num[j]) : T(0);
  KATBENCH_UNROLL
  for (int i = 0; i < NN; ++i) {
    const T b = i < n ? static_cast<T>(den[i]) : T(0);
    k.c[i] = SUM_ABS ? abs_of(b) : b;
  }
}

// c[0] + c[1] t + ... + c[D] t^D by Horner's rule, starting from c[D] (a start from zero would
// cost a multiply-add per call: 0 * t is not foldable in IEEE arithmetic).
template <typename T, int D, typename CT>
KATBENCH_HD T horner(const CT* c, T t) {
  T q = static_cast<T>(c[D]);
  KATBENCH_UNROLL
  for (int j = D - 1; j >= 0; --j) q = q * t + static_cast<T>(c[j]);
  return q;
}

// The same polynomial and its derivative in one interleaved Horner pass.
template <typename T, int D, typename CT>
KATBENCH_HD void horner_with_derivative(const CT* c, T t, T& q, T& dq) {
  q = static_cast<T>(c[D]);
  dq = T(0);
  if constexpr (D > 0) {
    dq = q;
    q = q * t + static_cast<T>(c[D - 1]);
    KATBENCH_UNROLL
    for (int j = D - 2; j >= 0; --j) {
      dq = dq * t + q;
      q = q * t + static_cast<T>(c[j]);
    }
  }
}

template <typename T, int MM, int NN, bool SUM_ABS, typename CT>
KATBENCH_HD T rational_forward(T x, const GroupCoefficients<CT, MM, NN>& k) {
  const T p = horner<T, MM>(k.a, x);
  const T u = SUM_ABS ? abs_of(x) : x;
  const T h = horner<T, NN - 1>(k.c, u);  // inner(u) = u h(u): no constant term
  // sum_abs: inner >= 0, so Q = 1 + u h(u) is a single multiply-add (contracted on the GPU).
  return divide(p, SUM_ABS ? T(1) + u * h : T(1) + abs_of(u * h));
}

// Per-element backward quantities: dx = dL/dx, gq = g / Q, gf = -g F sign(inner) / Q, u, and
// F(x) itself (for callers that write the forward output from the backward).
template <typename T>
struct BackwardTerms {
  T dx, gq, gf, u, f;
};

template <typename T, int MM, int NN, bool SUM_ABS, typename CT>
KATBENCH_HD BackwardTerms<T> rational_backward(T x, T g, const GroupCoefficients<CT, MM, NN>& k) {
  T p, dp, h, dh;
  horner_with_derivative<T, MM>(k.a, x, p, dp);
  const T u = SUM_ABS ? abs_of(x) : x;
  horner_with_derivative<T, NN - 1>(k.c, u, h, dh);
  const T inner = h * u, dinner = dh * u + h;  // inner(u) = u h(u), inner' = h + u h'
  const T s = SUM_ABS ? T(1) : sign_of(inner);  // sum_abs: inner >= 0, Q = 1 + inner
  const T rq = divide(T(1), T(1) + s * inner);
  const T f = p * rq;
  // sum_abs: dQ/dx = sign(x) inner'(|x|) (0 at x = 0, as autograd's abs; inner' >= 0). The GPU
  // writes it as a sign copy; on the CPU that select kept GCC from vectorising the backward
  // loop (sum_abs backward 3-4x slower than abs_sum's), so there it is a multiply by sign(x).
#if defined(__CUDA_ARCH__)
  const T dq_dx = SUM_ABS ? (x == T(0) ? T(0) : std::copysign(dinner, x)) : s * dinner;
#else
  const T dq_dx = (SUM_ABS ? sign_of(x) : s) * dinner;
#endif
  const T gq = g * rq;
  return {gq * (dp - f * dq_dx), gq, -gq * f * s, u, f};
}

// Takes scalars rather than BackwardTerms: a struct argument stays in memory inside
// `omp simd` loops and blocks GCC's vectoriser.
// Adds dL/da_j = gq x^j into slots[j * stride] (j = 0..MM) and dL/db_k = gf u^k into
// slots[(MM + k) * stride] (k = 1..NN). For sum_abs that is dL/d|b_k|: the caller multiplies the
// summed slots by sign(b_k) once (apply_denominator_signs), which is exact, so the result is
// the same as signing every term.
template <typename T, int MM, int NN, typename S>
KATBENCH_HD void add_coefficient_grads(T x, T gq, T gf, T u, S* slots, int stride) {
  constexpr int kPowers = (MM > NN ? MM : NN) + 1;
  T xk[kPowers];  // x^0 .. x^max(MM, NN), each by one multiply of two lower powers
  xk[0] = T(1);
  KATBENCH_UNROLL
  for (int j = 1; j < kPowers; ++j) xk[j] = j == 1 ? x : xk[j / 2] * xk[j - j / 2];
  KATBENCH_UNROLL
  for (int j = 0; j <= MM; ++j) slots[j * stride] += static_cast<S>(gq * xk[j]);
  KATBENCH_UNROLL  // u^k is x^k for even k and u x^(k-1) for odd k (u = |x| or x)
  for (int k = 1; k <= NN; ++k)
    slots[(MM + k) * stride] += static_cast<S>(gf * (k % 2 ? u * xk[k - 1] : xk[k]));
}

// sum_abs: turns summed dL/d|b_k| (from add_coefficient_grads) into dL/db_k, with
// d|b|/db = sign(b) taken as +1 at b = 0 (see header); den[0..n-1] holds b_1..b_n.
template <int MM, int NN, bool SUM_ABS, typename T, typename CT>
KATBENCH_HD void apply_denominator_signs(const CT* den, int n, T* sums) {
  if constexpr (SUM_ABS) {
    KATBENCH_UNROLL
    for (int i = 0; i < NN; ++i)
      if (i < n && den[i] < CT(0)) sums[MM + 1 + i] = -sums[MM + 1 + i];
  }
}

}  // namespace katbench
