// Device-side helpers shared by the cmc kernels (CUDA only; the host-testable index arithmetic is in
// cmc_conv_math.h).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cmc_conv_math.h"
#include "cmc_kernels.h"

namespace cmc {
namespace detail {

// The geometry flattened for the kernels (passed by value; all products fit int32, see
// checkKernelLimits()).
struct ConvParams {
    int32_t n, c, h, w, m, kh, kw;
    int32_t sh, sw, pt, pl, dh, dw, groups;
    int32_t cg, mg, ho, wo, hw, howo, taps;  // taps = kh * kw
    int32_t kRed;                            // reduction length of the float kernels: cg * taps
    int32_t pixOut;                          // n * ho * wo
    int32_t pixIn;                           // n * h * w
};

inline ConvParams makeParams(const ConvGeometry& g) {
    ConvParams p;
    p.n = g.n; p.c = g.c; p.h = g.h; p.w = g.w; p.m = g.m; p.kh = g.kh; p.kw = g.kw;
    p.sh = g.strideH; p.sw = g.strideW; p.pt = g.padTop; p.pl = g.padLeft;
    p.dh = g.dilationH; p.dw = g.dilationW; p.groups = g.groups;
    p.cg = g.cPerGroup(); p.mg = g.mPerGroup(); p.ho = g.outH(); p.wo = g.outW();
    p.hw = g.h * g.w; p.howo = p.ho * p.wo; p.taps = g.kh * g.kw;
    p.kRed = p.cg * p.taps;
    p.pixOut = g.n * p.howo;
    p.pixIn = g.n * p.hw;
    return p;
}

// validate() + checkKernelLimits() in one.
inline Status checkGeometry(const ConvGeometry& g) {
    Status s = g.validate();
    if (s != Status::kSuccess) return s;
    return checkKernelLimits(g);
}

inline Status launchStatus() {
    return cudaGetLastError() == cudaSuccess ? Status::kSuccess : Status::kCudaError;
}

inline int32_t ceilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }

template <typename T>
__device__ __forceinline__ float toFloat(T v);
template <>
__device__ __forceinline__ float toFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ float toFloat<__half>(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v) { return __float2half_rn(v); }

// A BinaryConv result in T: float16 by the contract's "float16_rounding" (a nonzero value never becomes
// zero: math::keepNonzeroHalfBits), so the binarization of the stored value is the float32 value's.
template <typename T>
__device__ __forceinline__ T binaryOut(float v);
template <>
__device__ __forceinline__ float binaryOut<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half binaryOut<__half>(float v) {
    return __ushort_as_half(math::keepNonzeroHalfBits(v, __half_as_ushort(__float2half_rn(v))));
}

// The fused epilogue: act(scale[m] * acc + shift[m]), rounded as the contract says (math::mulThenAdd).
__device__ __forceinline__ float epilogue(float acc, float scale, float shift, bool relu) {
    const float v = math::mulThenAdd(scale, acc, shift);
    return relu ? fmaxf(v, 0.0f) : v;
}

}  // namespace detail
}  // namespace cmc
