// Element-type conversion of a weight tensor into the plugin's workspace, for AdderConv when TensorRT
// hands W in a different float type than X (strongly typed networks keep W as the ONNX has it; the
// cmc kernels take X and W in one dtype).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace cmc {
namespace plugin {

cudaError_t castFloatToHalf(float const* src, void* dstHalf, int64_t count, cudaStream_t stream);
cudaError_t castHalfToFloat(void const* srcHalf, float* dst, int64_t count, cudaStream_t stream);

}  // namespace plugin
}  // namespace cmc
