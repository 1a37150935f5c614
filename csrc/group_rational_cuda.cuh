// CUDA kernels of katbench::group_rational (schema defined in katbench/ops/__init__.py).
//
// x is viewed as (rows, D). A block is TX x TY threads: threadIdx.x walks column vectors of VEC
// channels (one 16-byte load each), threadIdx.y and blockIdx.y walk rows. Every VEC-wide column
// vector lies inside one group, so each thread loads its group's coefficients into registers once
// and reuses them for all its rows. While a thread computes one row, the loads of its next rows
// are in flight (cp.async into shared memory, see for_each_row), so that memory stays busy
// without registers held for it. All arithmetic is float32 (float64 for double inputs).
//
// Backward: each thread accumulates its coefficient gradients in registers over all its rows; the
// block reduces them in shared memory, first across threadIdx.y, then across the column vectors
// of each group (of all groups for the slots of a shared numerator), and writes one partial per
// (slot, segment, blockIdx.y), a segment being the part of a group inside one blockIdx.x. A
// second small kernel, one block per coefficient, sums each coefficient's contiguous run of
// partials in a fixed order, so coefficient gradients are bitwise deterministic and no global
// atomics are used at all. With an input bias (F(x + bias), the bias of the linear layer before)
// each thread also sums its columns' dx, the block reduces them across threadIdx.y and a third
// kernel sums the per-blockIdx.y partials of each column in a fixed order: the bias gradient,
// deterministic too, without a separate pass over dx.
//
// This header holds the kernels and their launches; each dtype is instantiated in its own
// translation unit (group_rational_cuda_<dtype>.cu), which ninja compiles in parallel, and the
// entry points in group_rational_cuda.cpp call them through group_rational_cuda.h.
#pragma once

#include <ATen/cuda/CUDAContextLight.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_pipeline.h>

#include <algorithm>

#include "group_rational_cuda.h"

namespace katbench {
namespace {

// Launch tuning (measured on an H100 with `python -m katbench.bench tune`, which rebuilds the
// kernels with -DKATBENCH_<NAME>=value overrides through KATBENCH_CUDA_FLAGS).
#ifndef KATBENCH_THREADS_PER_BLOCK
#define KATBENCH_THREADS_PER_BLOCK 256
#endif
#ifndef KATBENCH_BLOCKS_PER_SM  // forward blocks launched per multiprocessor (grid size) for
#define KATBENCH_BLOCKS_PER_SM 16  // tensors streamed from DRAM (read + write larger than L2)
#endif
#ifndef KATBENCH_RESIDENT_BLOCKS_PER_SM  // likewise for tensors that stay in L2: one wave of
#define KATBENCH_RESIDENT_BLOCKS_PER_SM 4  // the 4 blocks of 256 threads at 64 registers
#endif
#ifndef KATBENCH_BACKWARD_BLOCKS_PER_SM  // likewise for backward: one wave of its 3 resident
#define KATBENCH_BACKWARD_BLOCKS_PER_SM 3   // blocks (8 left a last wave two thirds full)
#endif
#ifndef KATBENCH_MIN_BLOCKS  // forward __launch_bounds__ minimum resident blocks (caps registers)
#define KATBENCH_MIN_BLOCKS 1
#endif
#ifndef KATBENCH_BIAS_MIN_BLOCKS  // likewise with an input bias: 4 blocks of 256 threads keep the
#define KATBENCH_BIAS_MIN_BLOCKS 4   // 64 registers of the forward without one
#endif
#ifndef KATBENCH_BACKWARD_MIN_BLOCKS  // likewise for backward, whose occupancy limits it
#define KATBENCH_BACKWARD_MIN_BLOCKS 3
#endif
#ifndef KATBENCH_FUSED_BACKWARD_MIN_BLOCKS  // likewise for the fused backward (bias gradient,
#define KATBENCH_FUSED_BACKWARD_MIN_BLOCKS 2   // F(x)); also its grid. H200 block: 3 spilled, 2
#endif                                         // measured 0.99-1.03x MLP against 1.04-1.05x
#ifndef KATBENCH_FORWARD_STAGES  // rows of a thread's loads in flight, cp.async (0: plain loads);
#define KATBENCH_FORWARD_STAGES 3   // H200, bench tune: bf16 fwd/clone 1.12 at 2 -> 1.08 at 3
#endif
#ifndef KATBENCH_BACKWARD_STAGES  // likewise for backward (two 16-byte loads, x and grad, per row)
#define KATBENCH_BACKWARD_STAGES 2
#endif
constexpr int kThreadsPerBlock = KATBENCH_THREADS_PER_BLOCK;
constexpr int kBlocksPerSM = KATBENCH_BLOCKS_PER_SM;
constexpr int kResidentBlocksPerSM = KATBENCH_RESIDENT_BLOCKS_PER_SM;
constexpr int kBackwardBlocksPerSM = KATBENCH_BACKWARD_BLOCKS_PER_SM;
constexpr int kMinBlocks = KATBENCH_MIN_BLOCKS;
constexpr int kBiasMinBlocks = KATBENCH_BIAS_MIN_BLOCKS;
constexpr int kBackwardMinBlocks = KATBENCH_BACKWARD_MIN_BLOCKS;
constexpr int kFusedBackwardMinBlocks = KATBENCH_FUSED_BACKWARD_MIN_BLOCKS;
constexpr int kForwardStages = KATBENCH_FORWARD_STAGES;
constexpr int kBackwardStages = KATBENCH_BACKWARD_STAGES;
constexpr int kReduceThreads = 256;
static_assert(2 * 16 * kBackwardStages * kThreadsPerBlock <= 48 * 1024 &&
                  16 * kForwardStages * kThreadsPerBlock <= 48 * 1024,
              "the staged rows must fit the 48 KiB of shared memory a launch gets by default");

template <typename scalar_t>
using acc_type = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

template <typename scalar_t, int VEC>
struct alignas(sizeof(scalar_t) * VEC) Pack {
  static constexpr int size = VEC;
  scalar_t v[VEC];
};

struct Launch {
  dim3 grid, block;
};

template <typename scalar_t>
int vector_width(const Geometry& geo, std::initializer_list<const void*> pointers) {
  constexpr int vec = 16 / sizeof(scalar_t);
  bool ok = geo.group_width % vec == 0;
  for (const void* p : pointers) ok = ok && reinterpret_cast<uintptr_t>(p) % 16 == 0;
  return ok ? vec : 1;
}

// blocks_per_sm sets the grid size: a whole number of waves of the blocks that fit on a
// multiprocessor at once, so that no partly filled last wave leaves multiprocessors idle.
Launch launch_shape(const Geometry& geo, int vec, int blocks_per_sm) {
  const int64_t columns = geo.width / vec;
  // As few column blocks of at most 32 column vectors as the width needs, split evenly (a width
  // of 24 vectors gives blocks 24 wide, not 32 with 8 idle lanes; the rows of a narrow block
  // follow each other in memory, so a warp spanning two of them still reads one run).
  const int64_t column_blocks = (columns + 31) / 32;
  const int tx = static_cast<int>((columns + column_blocks - 1) / column_blocks);
  const int ty = kThreadsPerBlock / tx;
  const int64_t grid_x = (columns + tx - 1) / tx;
  const int sms = at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  const int64_t wanted_y = std::max<int64_t>(1, sms * blocks_per_sm / grid_x);
  const int64_t grid_y = std::min<int64_t>({(geo.rows + ty - 1) / ty, wanted_y, 65535});
  return {dim3(static_cast<unsigned>(grid_x), static_cast<unsigned>(grid_y)), dim3(tx, ty)};
}

// The coefficient tensors as the kernels read them, in place: unit stride along the order, any
// stride between groups (0 for a numerator shared by all groups, (1, m+1) or expanded).
template <typename acc_t>
struct Coefficients {
  const acc_t* num;
  const acc_t* den;
  int64_t num_group_stride, den_group_stride;
  int m, n;
};

template <typename acc_t, int MM, int NN, bool SUM_ABS>
__device__ __forceinline__ GroupCoefficients<acc_t, MM, NN> group_of(const Coefficients<acc_t>& c,
                                                                     int64_t group) {
  GroupCoefficients<acc_t, MM, NN> k;  // orders below (MM, NN) are zero-padded here
  load_group<acc_t, MM, NN, SUM_ABS>(k, c.num + group * c.num_group_stride,
                                     c.den + group * c.den_group_stride, c.m, c.n);
  return k;
}

// Whether any element of a pack needs the double path (float arithmetic only).
template <typename acc_t, int VEC>
__device__ __forceinline__ bool any_large(const acc_t (&xs)[VEC]) {
  if constexpr (!std::is_same_v<acc_t, float>) return false;
  bool large = false;
#pragma unroll
  for (int v = 0; v < VEC; ++v) large |= fabsf(xs[v]) > kLargeInput;
  return large;
}

template <typename scalar_t>
constexpr bool is_half_type = std::is_same_v<scalar_t, c10::BFloat16> ||
                              std::is_same_v<scalar_t, c10::Half>;

// Element v of a pack in the arithmetic type. bf16 -> float is a 16-bit shift, so each bf16 of a
// 32-bit word converts in one instruction (c10's conversion takes one and a half).
template <typename scalar_t, int VEC>
__device__ __forceinline__ acc_type<scalar_t> element(const Pack<scalar_t, VEC>& in, int v) {
  if constexpr (std::is_same_v<scalar_t, c10::BFloat16> && VEC % 2 == 0) {
    const uint32_t word = reinterpret_cast<const uint32_t*>(in.v)[v / 2];
    return __uint_as_float(v % 2 ? word & 0xffff0000u : word << 16);
  } else {
    return static_cast<acc_type<scalar_t>>(in.v[v]);
  }
}

// The input bias of a thread's VEC channels (F is evaluated at x + bias[c]): a pointer to them,
// null for none. They are loaded again for every row (16-byte loads that hit L1) rather than
// held in registers, which the loop has none left for. An instantiation without a bias
// (ENABLED false) adds nothing and has no branch.
template <typename acc_t, int VEC, bool ENABLED>
struct Shift {
  const acc_t* at;

  __device__ __forceinline__ Shift(const acc_t* bias, int64_t column)
      : at(ENABLED && bias != nullptr ? bias + column : nullptr) {}
};

template <typename scalar_t, int VEC, bool SHIFTED>
__device__ __forceinline__ void unpack(const Pack<scalar_t, VEC>& in,
                                       const Shift<acc_type<scalar_t>, VEC, SHIFTED>& shift,
                                       acc_type<scalar_t> (&xs)[VEC]) {
  using acc_t = acc_type<scalar_t>;
#pragma unroll
  for (int v = 0; v < VEC; ++v) xs[v] = element(in, v);
  if constexpr (SHIFTED) {
    if (shift.at == nullptr) return;
    constexpr int kPerLoad = 16 / sizeof(acc_t);  // the host aligns the bias to 16 bytes
    if constexpr (VEC % kPerLoad == 0) {
#pragma unroll
      for (int q = 0; q < VEC / kPerLoad; ++q) {
        const float4 quad = __ldg(reinterpret_cast<const float4*>(shift.at) + q);
        acc_t bias[kPerLoad];
        memcpy(bias, &quad, 16);
#pragma unroll
        for (int v = 0; v < kPerLoad; ++v) xs[q * kPerLoad + v] += bias[v];
      }
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v) xs[v] += __ldg(shift.at + v);
    }
  }
}

// The inverse, element by element as values are computed (so that no array of results stays
// live): for half types each odd element is rounded together with the one before it, to
// nearest even like c10's conversion, in one instruction (F2FP.PACK_AB) and in memory order.
template <typename scalar_t, int VEC>
struct Packer {
  Pack<scalar_t, VEC> out;
  acc_type<scalar_t> pending;

  __device__ __forceinline__ void set(int v, acc_type<scalar_t> y) {
    if constexpr (is_half_type<scalar_t> && VEC % 2 == 0) {
      if (v % 2 == 0) {
        pending = y;
        return;
      }
      auto* words = reinterpret_cast<uint32_t*>(out.v);
      if constexpr (std::is_same_v<scalar_t, c10::BFloat16>) {
        const __nv_bfloat162 pair = __floats2bfloat162_rn(pending, y);
        words[v / 2] = *reinterpret_cast<const uint32_t*>(&pair);
      } else {
        const __half2 pair = __floats2half2_rn(pending, y);
        words[v / 2] = *reinterpret_cast<const uint32_t*>(&pair);
      }
    } else {
      out.v[v] = static_cast<scalar_t>(y);
    }
  }
};

template <typename scalar_t, int VEC, int MM, int NN, bool SUM_ABS, bool BIAS>
__device__ __forceinline__ Pack<scalar_t, VEC> forward_pack(
    const Pack<scalar_t, VEC>& in, const GroupCoefficients<acc_type<scalar_t>, MM, NN>& k,
    const Shift<acc_type<scalar_t>, VEC, BIAS>& shift) {
  using acc_t = acc_type<scalar_t>;
  acc_t xs[VEC];
  unpack(in, shift, xs);
  Packer<scalar_t, VEC> ys;
  if (!any_large<acc_t, VEC>(xs)) {  // the common case: no branch per element
#pragma unroll
    for (int v = 0; v < VEC; ++v) ys.set(v, rational_forward<acc_t, MM, NN, SUM_ABS>(xs[v], k));
    return ys.out;
  }
#pragma unroll
  for (int v = 0; v < VEC; ++v)  // rare: powers of huge inputs evaluated in double
    ys.set(v, fabs(xs[v]) > kLargeInput
                  ? static_cast<acc_t>(rational_forward<double, MM, NN, SUM_ABS>(xs[v], k))
                  : rational_forward<acc_t, MM, NN, SUM_ABS>(xs[v], k));
  return ys.out;
}

// dL/dx of one pack; adds the pack's coefficient gradients to sums (dL/d|b| for sum_abs: the
// kernel applies sign(b) once at the end). FUSED evaluates at x + shift, also packs F into ys
// and adds dL/dx to columns (the column sums, the gradient of the input bias).
template <typename scalar_t, int VEC, int MM, int NN, bool SUM_ABS, bool FUSED>
__device__ __forceinline__ Pack<scalar_t, VEC> backward_pack(
    const Pack<scalar_t, VEC>& xin, const Pack<scalar_t, VEC>& gin,
    const GroupCoefficients<acc_type<scalar_t>, MM, NN>& k, acc_type<scalar_t>* sums,
    const Shift<acc_type<scalar_t>, VEC, FUSED>& shift, Packer<scalar_t, VEC>& ys,
    acc_type<scalar_t> (&columns)[VEC]) {
  using acc_t = acc_type<scalar_t>;
  acc_t xs[VEC];
  unpack(xin, shift, xs);
  Packer<scalar_t, VEC> dxs;
  const auto keep = [&](int v, acc_t dx, acc_t f) {
    dxs.set(v, dx);
    if constexpr (FUSED) {
      ys.set(v, f);
      columns[v] += dx;
    }
  };
  if (!any_large<acc_t, VEC>(xs)) {  // the common case: no branch per element
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const auto t = rational_backward<acc_t, MM, NN, SUM_ABS>(xs[v], element(gin, v), k);
      add_coefficient_grads<acc_t, MM, NN>(xs[v], t.gq, t.gf, t.u, sums, 1);
      keep(v, t.dx, t.f);
    }
    return dxs.out;
  }
#pragma unroll
  for (int v = 0; v < VEC; ++v) {
    const acc_t g = element(gin, v);
    if (fabs(xs[v]) > kLargeInput) {  // rare: huge x in double
      const auto t = rational_backward<double, MM, NN, SUM_ABS>(xs[v], g, k);
      add_coefficient_grads<double, MM, NN>(xs[v], t.gq, t.gf, t.u, sums, 1);
      keep(v, static_cast<acc_t>(t.dx), static_cast<acc_t>(t.f));
    } else {
      const auto t = rational_backward<acc_t, MM, NN, SUM_ABS>(xs[v], g, k);
      add_coefficient_grads<acc_t, MM, NN>(xs[v], t.gq, t.gf, t.u, sums, 1);
      keep(v, t.dx, t.f);
    }
  }
  return dxs.out;
}

template <typename scalar_t, int VEC>
__device__ __forceinline__ Pack<scalar_t, VEC> load_pack(const scalar_t* p) {
  return *reinterpret_cast<const Pack<scalar_t, VEC>*>(p);
}

template <typename scalar_t, int VEC>
__device__ __forceinline__ void store_pack(scalar_t* p, const Pack<scalar_t, VEC>& v) {
  *reinterpret_cast<Pack<scalar_t, VEC>*>(p) = v;
}

// Bytes of shared memory for for_each_row's staged packs (none for unvectorised launches).
inline size_t staging_bytes(int stages, int inputs, int vec, int vector_width,
                            const dim3& block) {
  return vec == vector_width ? static_cast<size_t>(stages) * inputs * 16 * block.x * block.y : 0;
}

// Runs body(offset, packs) for this thread's rows r, r + step, ... < rows, offset being the
// element offset of (row, column) and packs[i] the pack of inputs[i] there. With STAGES > 0 and
// 16-byte packs, the loads of the next STAGES - 1 rows are in flight while body runs (cp.async
// into this thread's own slots of the shared memory `staging`), so a thread keeps memory busy
// during its arithmetic without holding registers for it (prefetching the next row into
// registers instead measured slower on an H200: bf16 forward 1.22x clone against 1.12x);
// otherwise each row is loaded, then computed. Offsets advance by one addition per row: at 8
// bf16 per row, recomputing addresses from the row index cost a sixth of the instructions.
template <int STAGES, int INPUTS, typename P, typename scalar_t, typename Body>
__device__ __forceinline__ void for_each_row(unsigned char* staging,
                                             const scalar_t* const (&inputs)[INPUTS], int64_t r,
                                             int64_t step, int64_t rows, int64_t width,
                                             int64_t column, Body&& body) {
  const int64_t stride = step * width, end = rows * width;  // offset < end <=> row < rows
  int64_t offset = r * width + column;
  if constexpr (STAGES > 0 && sizeof(P) == 16) {
    const int threads = blockDim.x * blockDim.y;
    P* own = reinterpret_cast<P*>(staging) + threadIdx.y * blockDim.x + threadIdx.x;
    // own[(stage * INPUTS + i) * threads]: this thread's slot of input i in a stage.
    int64_t issued = offset;  // offset of the next row to load
    const auto issue = [&](int stage) {
      if (issued < end) {
#pragma unroll
        for (int i = 0; i < INPUTS; ++i)
          __pipeline_memcpy_async(own + (stage * INPUTS + i) * threads, inputs[i] + issued, 16);
      }
      __pipeline_commit();  // an empty group past the last row keeps the count uniform
      issued += stride;
    };
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) issue(s);
    for (int stage = 0; offset < end; offset += stride) {
      issue(stage == 0 ? STAGES - 1 : stage - 1);
      __pipeline_wait_prior(STAGES - 1);
      P packs[INPUTS];
#pragma unroll
      for (int i = 0; i < INPUTS; ++i)
        packs[i] = load_pack<scalar_t, P::size>(own[(stage * INPUTS + i) * threads].v);
      body(offset, packs);
      stage = stage + 1 == STAGES ? 0 : stage + 1;
    }
    __pipeline_wait_prior(0);
  } else {
    for (; offset < end; offset += stride) {
      P packs[INPUTS];
#pragma unroll
      for (int i = 0; i < INPUTS; ++i) packs[i] = load_pack<scalar_t, P::size>(inputs[i] + offset);
      body(offset, packs);
    }
  }
}

// y = F(x + bias); BIAS false: no bias (bias is null), nothing added.
template <typename scalar_t, int VEC, int MM, int NN, bool SUM_ABS, bool BIAS>
__global__ void __launch_bounds__(kThreadsPerBlock, BIAS ? kBiasMinBlocks : kMinBlocks)
    forward_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ y,
                   const Coefficients<acc_type<scalar_t>> coefficients,
                   const acc_type<scalar_t>* __restrict__ bias, int64_t rows, int64_t width,
                   int64_t group_width) {
  using P = Pack<scalar_t, VEC>;
  const int64_t column = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * VEC;
  if (column >= width) return;
  const auto k = group_of<acc_type<scalar_t>, MM, NN, SUM_ABS>(coefficients,
                                                               column / group_width);
  const Shift<acc_type<scalar_t>, VEC, BIAS> shift(bias, column);
  const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.y;
  const int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const scalar_t* const inputs[1] = {x};
  for_each_row<kForwardStages, 1, P>(shared_bytes, inputs, r, step, rows, width, column,
                                     [&](int64_t offset, const P* packs) {
    store_pack(y + offset, forward_pack<scalar_t, VEC, MM, NN, SUM_ABS>(packs[0], k, shift));
  });
}

// Where blockIdx.x's part of `group` lies among the segments (a group's segments are
// consecutive; numbering them group + blockIdx.x leaves gaps but needs no table).
__host__ __device__ __forceinline__ int64_t segment_of(int64_t group, int64_t block_x) {
  return group + block_x;
}

// FUSED (a separate instantiation, so that the plain backward keeps its registers) evaluates at
// x + bias (bias may be null), writes this block's column sums of dx (the bias gradient) to
// column_partial[blockIdx.y][column] where that is not null, and y = F where y is not null (a
// forward output recomputed for one write, instead of a forward kernel's read and write).
template <typename scalar_t, int VEC, int MM, int NN, bool SUM_ABS, bool FUSED>
__global__ void __launch_bounds__(kThreadsPerBlock,
                                  FUSED ? kFusedBackwardMinBlocks : kBackwardMinBlocks)
    backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ x,
                    scalar_t* __restrict__ dx, const Coefficients<acc_type<scalar_t>> coefficients,
                    acc_type<scalar_t>* __restrict__ partial,
                    const acc_type<scalar_t>* __restrict__ bias, scalar_t* __restrict__ y,
                    acc_type<scalar_t>* __restrict__ column_partial, int64_t rows, int64_t width,
                    int64_t group_width, bool shared_numerator) {
  using acc_t = acc_type<scalar_t>;
  using P = Pack<scalar_t, VEC>;
  constexpr int K = MM + 1 + NN;
  extern __shared__ __align__(16) unsigned char shared_bytes[];  // row staging, then reduction
  acc_t* shared = reinterpret_cast<acc_t*>(shared_bytes);  // [TY][TX][K], then [TX][K]

  const int64_t column_vector = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t column = column_vector * VEC;
  const bool active = column < width;
  acc_t sums[K];
#pragma unroll
  for (int s = 0; s < K; ++s) sums[s] = acc_t(0);
  acc_t column_sums[VEC];  // FUSED: this thread's sums of dx over its rows
#pragma unroll
  for (int v = 0; v < VEC; ++v) column_sums[v] = acc_t(0);
  if (active) {
    const int64_t group = column / group_width;
    const auto k = group_of<acc_t, MM, NN, SUM_ABS>(coefficients, group);
    const Shift<acc_t, VEC, FUSED> shift(bias, column);
    const int64_t step = static_cast<int64_t>(gridDim.y) * blockDim.y;
    const int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y;
    const scalar_t* const inputs[2] = {x, grad};
    for_each_row<kBackwardStages, 2, P>(shared_bytes, inputs, r, step, rows, width, column,
                                        [&](int64_t offset, const P* packs) {
      Packer<scalar_t, VEC> ys;
      store_pack(dx + offset, backward_pack<scalar_t, VEC, MM, NN, SUM_ABS, FUSED>(
                                  packs[0], packs[1], k, sums, shift, ys, column_sums));
      if constexpr (FUSED) {
        if (y != nullptr) store_pack(y + offset, ys.out);
      }
    });
    apply_denominator_signs<MM, NN, SUM_ABS>(
        coefficients.den + group * coefficients.den_group_stride, coefficients.n, sums);
  }
  const int tx = threadIdx.x, ty = threadIdx.y, TX = blockDim.x, TY = blockDim.y;
  acc_t* columns = shared + TY * TX * K;
  if constexpr (kBackwardStages > 0) __syncthreads();  // the reduction reuses the staging
#pragma unroll
  for (int s = 0; s < K; ++s) shared[(ty * TX + tx) * K + s] = sums[s];
  __syncthreads();
  // Fixed-order reduction over threadIdx.y: thread (tx, ty) sums slot s = ty, ty + TY, ...
  for (int s = ty; s < K; s += TY) {
    acc_t total = acc_t(0);
    for (int row = 0; row < TY; ++row) total += shared[(row * TX + tx) * K + s];
    columns[tx * K + s] = total;
  }
  __syncthreads();
  // Then over the block's column vectors of each group, in column order (over all of them for a
  // shared numerator's slots, which become segment blockIdx.x): partial[slot][segment][blockIdx.y].
  const int64_t column_vectors = width / VEC, vectors_per_group = group_width / VEC;
  const int64_t segments = width / group_width + gridDim.x - 1;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * TX;
  const int64_t end = std::min<int64_t>(first + TX, column_vectors);
  const int64_t first_group = first / vectors_per_group;
  const int64_t local_groups = first < end ? (end - 1) / vectors_per_group - first_group + 1 : 0;
  for (int64_t o = ty * TX + tx; o < local_groups * K; o += TX * TY) {
    const int s = static_cast<int>(o % K);
    const int64_t group = first_group + o / K;
    const bool pooled = shared_numerator && s <= MM;
    if (pooled && group > first_group) continue;
    const int64_t begin = pooled ? first : std::max(first, group * vectors_per_group);
    const int64_t stop = pooled ? end : std::min(end, (group + 1) * vectors_per_group);
    acc_t total = acc_t(0);
    for (int64_t c = begin; c < stop; ++c) total += columns[(c - first) * K + s];
    const int64_t segment = pooled ? blockIdx.x : segment_of(group, blockIdx.x);
    partial[(s * segments + segment) * gridDim.y + blockIdx.y] = total;
  }
  if constexpr (FUSED) {
    if (column_partial == nullptr) return;
    __syncthreads();  // the column sums reuse the shared memory: [TY][TX][VEC]
#pragma unroll
    for (int v = 0; v < VEC; ++v) shared[(ty * TX + tx) * VEC + v] = column_sums[v];
    __syncthreads();
    // Fixed-order sums over threadIdx.y, one (column vector, element) per thread.
    const int64_t block_columns = (end - first) * VEC;
    for (int64_t o = ty * TX + tx; o < block_columns; o += TX * TY) {
      acc_t total = acc_t(0);
      for (int row = 0; row < TY; ++row) total += shared[row * TX * VEC + o];
      column_partial[blockIdx.y * width + first * VEC + o] = total;
    }
  }
}

// Sums column_partial (blocks_y, width) over blocks_y in a fixed order into out (width).
template <typename acc_t>
__global__ void __launch_bounds__(kReduceThreads)
    column_sums_kernel(const acc_t* __restrict__ column_partial, int64_t blocks_y, int64_t width,
                       acc_t* __restrict__ out) {
  const int64_t column = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (column >= width) return;
  acc_t total = acc_t(0);
  for (int64_t b = 0; b < blocks_y; ++b) total += column_partial[b * width + column];
  out[column] = total;
}

// Sums the backward partials (K, segments, blocks_y) into the coefficient gradients: one block
// per coefficient, whose partials (its group's segments, or blockIdx.x 0..blocks_x-1 for a
// shared numerator, times blocks_y) are one contiguous run; each thread sums a fixed strided
// subset, then a fixed-order tree, so the result is bitwise deterministic. Writes grad_num
// (numerator_rows, m+1) and grad_den (g, n).
template <typename acc_t, int MM>
__global__ void __launch_bounds__(kReduceThreads)
    reduce_partials_kernel(const acc_t* __restrict__ partial, int64_t blocks_x, int64_t blocks_y,
                           int64_t segments, int64_t block_vectors, int64_t vectors_per_group,
                           int64_t numerator_rows, int m, int n, acc_t* __restrict__ grad_num,
                           acc_t* __restrict__ grad_den) {
  __shared__ acc_t shared[kReduceThreads];
  const int64_t numerator_outputs = numerator_rows * (m + 1);
  const bool numerator = blockIdx.x < numerator_outputs;
  const int64_t index = numerator ? blockIdx.x : blockIdx.x - numerator_outputs;
  const int64_t group = numerator ? index / (m + 1) : index / n;
  const int64_t slot = numerator ? index % (m + 1) : MM + 1 + index % n;
  int64_t first = 0, count = blocks_x;  // a shared numerator: every blockIdx.x
  if (!numerator || numerator_rows > 1) {
    const int64_t first_block = group * vectors_per_group / block_vectors;
    const int64_t last_block = ((group + 1) * vectors_per_group - 1) / block_vectors;
    first = segment_of(group, first_block);
    count = last_block - first_block + 1;
  }
  const acc_t* run = partial + (slot * segments + first) * blocks_y;
  acc_t total = acc_t(0);
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < count * blocks_y; i += kReduceThreads) total += run[i];
  shared[threadIdx.x] = total;
  __syncthreads();
  for (int stride = kReduceThreads / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) (numerator ? grad_num : grad_den)[index] = shared[0];
}

// A coefficient tensor in the arithmetic dtype with unit stride along the order: the parameter
// itself in the usual case (float32, contiguous or an expanded shared numerator), else a copy.
inline at::Tensor coefficients_as(const at::Tensor& t, at::ScalarType type) {
  if (t.scalar_type() == type && (t.size(1) <= 1 || t.stride(1) == 1)) return t;
  return t.to(type).contiguous();
}

template <typename acc_t>
Coefficients<acc_t> coefficients_of(const at::Tensor& a, const at::Tensor& b,
                                    const Geometry& geo) {
  return {a.template data_ptr<acc_t>(), b.template data_ptr<acc_t>(),
          a.size(0) == 1 ? 0 : a.stride(0), b.stride(0), geo.m, geo.n};
}

// bias: undefined, or (D,) in the arithmetic dtype.
template <typename scalar_t, int MM, int NN, bool SUM_ABS>
void launch_forward(const at::Tensor& x, at::Tensor& y, const at::Tensor& num,
                    const at::Tensor& den, const at::Tensor& bias, const Geometry& geo) {
  using acc_t = acc_type<scalar_t>;
  constexpr int V = 16 / sizeof(scalar_t);
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  const auto a = coefficients_as(num, acc), b = coefficients_as(den, acc);
  const int vec = vector_width<scalar_t>(geo, {x.data_ptr(), y.data_ptr()});
  // Streaming tensors run best in several short waves, L2-resident ones in one (bench tune on
  // H100, fwd/clone: 64x1000x512 bf16 1.12 -> 1.06 at 16 per SM; 128x197x192 1.78 -> 1.63 at 4).
  const bool streams = 2 * x.nbytes() > static_cast<size_t>(
                                             at::cuda::getCurrentDeviceProperties()->l2CacheSize);
  const Launch l = launch_shape(geo, vec, streams ? kBlocksPerSM : kResidentBlocksPerSM);
  const bool shifted = bias.defined();
  auto kernel = vec == V ? (shifted ? forward_kernel<scalar_t, V, MM, NN, SUM_ABS, true>
                                    : forward_kernel<scalar_t, V, MM, NN, SUM_ABS, false>)
                         : (shifted ? forward_kernel<scalar_t, 1, MM, NN, SUM_ABS, true>
                                    : forward_kernel<scalar_t, 1, MM, NN, SUM_ABS, false>);
  const size_t shared = staging_bytes(kForwardStages, 1, vec, V, l.block);
  kernel<<<l.grid, l.block, shared, c10::cuda::getCurrentCUDAStream()>>>(
      x.template data_ptr<scalar_t>(), y.template data_ptr<scalar_t>(),
      coefficients_of<acc_t>(a, b, geo), shifted ? bias.template data_ptr<acc_t>() : nullptr,
      geo.rows, geo.width, geo.group_width);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Writes dx, y = F(x + bias) where y is defined and the bias gradient (column sums of dx, in the
// arithmetic dtype) where bias is; returns the numerator and denominator gradients in the
// arithmetic dtype.
template <typename scalar_t, int MM, int NN, bool SUM_ABS>
std::pair<at::Tensor, at::Tensor> launch_backward(const at::Tensor& grad, const at::Tensor& x,
                                                  at::Tensor& dx, at::Tensor& y,
                                                  const at::Tensor& bias, at::Tensor& grad_bias,
                                                  const at::Tensor& num, const at::Tensor& den,
                                                  const Geometry& geo) {
  using acc_t = acc_type<scalar_t>;
  constexpr int V = 16 / sizeof(scalar_t);
  constexpr int K = MM + 1 + NN;
  const auto acc = c10::CppTypeToScalarType<acc_t>::value;
  const auto a = coefficients_as(num, acc), b = coefficients_as(den, acc);
  const bool fused = y.defined() || bias.defined();
  const int vec = vector_width<scalar_t>(
      geo, {x.data_ptr(), grad.data_ptr(), dx.data_ptr(), y.defined() ? y.data_ptr() : nullptr});
  const Launch l = launch_shape(
      geo, vec, fused ? std::min(kBackwardBlocksPerSM, kFusedBackwardMinBlocks)
                      : kBackwardBlocksPerSM);
  const int64_t numerator_rows = num.size(0);  // 1: shared by all groups
  const int64_t segments = geo.groups + l.grid.x - 1;
  auto partial = at::empty({K, segments, static_cast<int64_t>(l.grid.y)}, x.options().dtype(acc));
  at::Tensor column_partial;
  if (bias.defined())
    column_partial = at::empty({static_cast<int64_t>(l.grid.y), geo.width}, partial.options());
  const size_t shared = std::max<size_t>(
      static_cast<size_t>(l.block.x) * (l.block.y + 1) * K * sizeof(acc_t),
      staging_bytes(kBackwardStages, 2, vec, V, l.block));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  auto kernel = vec == V ? (fused ? backward_kernel<scalar_t, V, MM, NN, SUM_ABS, true>
                                  : backward_kernel<scalar_t, V, MM, NN, SUM_ABS, false>)
                         : (fused ? backward_kernel<scalar_t, 1, MM, NN, SUM_ABS, true>
                                  : backward_kernel<scalar_t, 1, MM, NN, SUM_ABS, false>);
  kernel<<<l.grid, l.block, shared, stream>>>(
      grad.template data_ptr<scalar_t>(), x.template data_ptr<scalar_t>(),
      dx.template data_ptr<scalar_t>(), coefficients_of<acc_t>(a, b, geo),
      partial.template data_ptr<acc_t>(),
      bias.defined() ? bias.template data_ptr<acc_t>() : nullptr,
      y.defined() ? y.template data_ptr<scalar_t>() : nullptr,
      column_partial.defined() ? column_partial.template data_ptr<acc_t>() : nullptr, geo.rows,
      geo.width, geo.group_width, numerator_rows == 1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  auto grad_num = at::empty({numerator_rows, geo.m + 1}, a.options());
  auto grad_den = at::empty({geo.groups, geo.n}, b.options());
  const int64_t outputs = numerator_rows * (geo.m + 1) + geo.groups * geo.n;
  reduce_partials_kernel<acc_t, MM><<<static_cast<unsigned>(outputs), kReduceThreads, 0, stream>>>(
      partial.template data_ptr<acc_t>(), l.grid.x, l.grid.y, segments, l.block.x,
      geo.group_width / vec, numerator_rows, geo.m, geo.n, grad_num.template data_ptr<acc_t>(),
      grad_den.template data_ptr<acc_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (bias.defined()) {
    grad_bias = at::empty({geo.width}, partial.options());
    const auto blocks = static_cast<unsigned>((geo.width + kReduceThreads - 1) / kReduceThreads);
    column_sums_kernel<acc_t><<<blocks, kReduceThreads, 0, stream>>>(
        column_partial.template data_ptr<acc_t>(), l.grid.y, geo.width,
        grad_bias.template data_ptr<acc_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {grad_num, grad_den};
}

}  // namespace

template <typename scalar_t>
void forward_cuda(const at::Tensor& x, at::Tensor& y, const at::Tensor& num,
                  const at::Tensor& den, const std::optional<at::Tensor>& bias,
                  const Geometry& geo, bool sum_abs) {
  const auto shift = bias_as(bias, c10::CppTypeToScalarType<acc_type<scalar_t>>::value);
  dispatch_orders(geo, sum_abs, [&](auto orders, auto sum_abs_t) {
    launch_forward<scalar_t, decltype(orders.first)::value, decltype(orders.second)::value,
                   decltype(sum_abs_t)::value>(x, y, num, den, shift, geo);
  });
}

template <typename scalar_t>
std::pair<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                at::Tensor& dx, at::Tensor& y,
                                                const std::optional<at::Tensor>& bias,
                                                at::Tensor& grad_bias, const at::Tensor& num,
                                                const at::Tensor& den, const Geometry& geo,
                                                bool sum_abs) {
  const auto shift = bias_as(bias, c10::CppTypeToScalarType<acc_type<scalar_t>>::value);
  std::pair<at::Tensor, at::Tensor> grads;
  dispatch_orders(geo, sum_abs, [&](auto orders, auto sum_abs_t) {
    grads = launch_backward<scalar_t, decltype(orders.first)::value,
                            decltype(orders.second)::value, decltype(sum_abs_t)::value>(
        grad, x, dx, y, shift, grad_bias, num, den, geo);
  });
  return grads;
}

// The explicit instantiations of one dtype's forward and backward (one translation unit each).
#define KATBENCH_INSTANTIATE_CUDA(scalar_t)                                                    \
  template void forward_cuda<scalar_t>(const at::Tensor&, at::Tensor&, const at::Tensor&,       \
                                       const at::Tensor&, const std::optional<at::Tensor>&,     \
                                       const Geometry&, bool);                                  \
  template std::pair<at::Tensor, at::Tensor> backward_cuda<scalar_t>(                           \
      const at::Tensor&, const at::Tensor&, at::Tensor&, at::Tensor&,                          \
      const std::optional<at::Tensor>&, at::Tensor&, const at::Tensor&, const at::Tensor&,      \
      const Geometry&, bool);

}  // namespace katbench
