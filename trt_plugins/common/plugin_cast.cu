#include "plugin_cast.h"

#include <cuda_fp16.h>

namespace cmc {
namespace plugin {
namespace {

__global__ void floatToHalfKernel(float const* __restrict__ src, __half* __restrict__ dst, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        dst[i] = __float2half_rn(src[i]);
    }
}

__global__ void halfToFloatKernel(__half const* __restrict__ src, float* __restrict__ dst, int64_t count) {
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        dst[i] = __half2float(src[i]);
    }
}

unsigned gridFor(int64_t count, unsigned block) {
    int64_t const blocks = (count + block - 1) / block;
    return static_cast<unsigned>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

}  // namespace

cudaError_t castFloatToHalf(float const* src, void* dstHalf, int64_t count, cudaStream_t stream) {
    if (count <= 0) {
        return cudaSuccess;
    }
    constexpr unsigned kBlock = 256;
    floatToHalfKernel<<<gridFor(count, kBlock), kBlock, 0, stream>>>(src, static_cast<__half*>(dstHalf), count);
    return cudaGetLastError();
}

cudaError_t castHalfToFloat(void const* srcHalf, float* dst, int64_t count, cudaStream_t stream) {
    if (count <= 0) {
        return cudaSuccess;
    }
    constexpr unsigned kBlock = 256;
    halfToFloatKernel<<<gridFor(count, kBlock), kBlock, 0, stream>>>(static_cast<__half const*>(srcHalf), dst, count);
    return cudaGetLastError();
}

}  // namespace plugin
}  // namespace cmc
