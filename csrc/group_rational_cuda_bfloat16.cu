// The bfloat16 instantiation of the CUDA kernels (group_rational_cuda.cuh): a translation unit of
// its own, compiled in parallel with the other dtypes'.
#include "group_rational_cuda.cuh"

namespace katbench {
KATBENCH_INSTANTIATE_CUDA(c10::BFloat16)
}  // namespace katbench
