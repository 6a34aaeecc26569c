// The plain-C++ part of the cmc kernel API: types and host-side helpers that need neither CUDA nor
// TensorRT, so that they compile with any C++17 compiler and are unit-tested on a CPU-only machine
// (trt_plugins/tests). cmc_kernels.h includes this header; include that one to call the kernels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cmc {

enum class DType : int32_t { kFloat32 = 0, kFloat16 = 1 };

enum class Status : int32_t {
    kSuccess = 0,
    kInvalidArgument = 1,  // geometry, groups or pointers inconsistent
    kUnsupported = 2,      // valid but not implemented for this dtype / architecture
    kCudaError = 3,        // a launch failed; cudaGetLastError() has the reason
};

const char* statusString(Status s);

// The geometry of one 2-D convolution-shaped operator (AdderConv, BinaryConv).
struct ConvGeometry {
    int32_t n = 0, c = 0, h = 0, w = 0;  // input X [n, c, h, w]
    int32_t m = 0, kh = 0, kw = 0;       // output channels and kernel
    int32_t strideH = 1, strideW = 1;
    int32_t padTop = 0, padLeft = 0, padBottom = 0, padRight = 0;  // ONNX pads order t, l, b, r
    int32_t dilationH = 1, dilationW = 1;
    int32_t groups = 1;

    int32_t cPerGroup() const { return groups > 0 ? c / groups : 0; }
    int32_t mPerGroup() const { return groups > 0 ? m / groups : 0; }
    int32_t outH() const { return (h + padTop + padBottom - dilationH * (kh - 1) - 1) / strideH + 1; }
    int32_t outW() const { return (w + padLeft + padRight - dilationW * (kw - 1) - 1) / strideW + 1; }
    // kSuccess, or kInvalidArgument when any size is non-positive, c or m is not divisible by
    // groups, or the output would be empty.
    Status validate() const;
};

struct Epilogue {
    const float* scale = nullptr;  // [m]
    const float* shift = nullptr;  // [m]
    bool relu = false;
};

// Packed words per kernel tap of BinaryConv's weights (and of its packed activations).
int32_t binaryWordsPerTap(int32_t cPerGroup);

// Workspace sizes (also declared, with the kernels they belong to, in cmc_kernels.h).
size_t adderConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype);
size_t adderConvBackwardWorkspaceSize(const ConvGeometry& g);
size_t binaryConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput);

// ---- BinaryConv packed activations, prepared weights, kernel choice (see cmc_kernels.h) -----------
// Words per pixel of packed activations: 4 * ceil(c / 128) (128-bit aligned), 0 for c <= 0.
int32_t binaryPackedWordsPerPixel(int32_t c);

struct BinaryIO {
    bool inputPacked = false;   // x is int32 [n, h, w, binaryPackedWordsPerPixel(c)]
    bool outputPacked = false;  // y is int32 [n, ho, wo, binaryPackedWordsPerPixel(m)]
};

enum class BinaryKernel : int32_t {
    kAuto = 0,      // binaryConvChooseKernel's rule on the current device
    kPopcount = 1,  // XNOR/popcount implicit GEMM on CUDA cores (any sm; groups; the float-input path)
    kBmma = 2,      // bit tensor cores, mma.sync m16n8k256 .b1 AND-popc (sm_80+, group 1)
};

// Bytes of the prepared weights for g (only m, c, groups, kh, kw matter); 0 for an invalid g.
size_t binaryConvPreparedWeightsSize(const ConvGeometry& g);

// Whether the BMMA kernel can run the geometry at all (group 1, kh*kw <= 64, rectangle table of at
// most 4096 entries per filter, tensor sizes within the 32-bit index limits).
bool binaryBmmaSupportsGeometry(const ConvGeometry& g);

// The kernel choice rule (provisional, to be re-tuned from GPU measurements; trt_plugins/KERNELS.md):
// kBmma when binarizeInput, smVersion >= 80 (e.g. 87 for sm_87), binaryBmmaSupportsGeometry(g) and
// cPerGroup >= 64; kPopcount otherwise (the float-input path when !binarizeInput is reported as
// kPopcount: the one non-BMMA family).
BinaryKernel binaryConvChooseKernel(const ConvGeometry& g, bool binarizeInput, int32_t smVersion);

// Workspace of binaryConvForwardEx: the maximum over the kernels it may choose (device independent).
size_t binaryConvForwardExWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io);

// ---- host-side helpers (plain C++; used by the launchers and by the CPU unit tests) -------------

// kUnsupported when a tensor of the geometry has 2^31 or more elements (the kernels index with
// 32-bit integers) or the launch grid would exceed CUDA's limits; kSuccess otherwise. Call after
// validate().
Status checkKernelLimits(const ConvGeometry& g);

// Number of kernel taps p in [0, k) whose input coordinate o*stride - padBegin + p*dilation lies in
// [0, size): the taps of output coordinate o that read real (unpadded) input. Same function as the
// device code uses (cmc_conv_math.h); exported here for tests.
int32_t validTaps1D(int32_t o, int32_t size, int32_t k, int32_t stride, int32_t padBegin, int32_t dilation);

// Packs float weights [m, cPerGroup, kh, kw] into the contract's int32 [m, kh, kw, words] layout:
// bit b (LSB first) of word k is channel 32k+b, 1 for w >= 0 (+1), 0 for -1, tail bits zero.
// `packed` holds m * kh * kw * binaryWordsPerTap(cPerGroup) words.
void binaryPackWeightsHost(const ConvGeometry& g, const float* w, int32_t* packed);

// Packs activations x [n, c, h, w] into the layout the BinaryConv kernel reads from its workspace:
// uint32 [n, h, w, groups, words]: bit b of word k of group gi is binarize(x[n, gi*Cg + 32k + b]).
void binaryPackActivationsHost(const ConvGeometry& g, const float* x, uint32_t* packed);

// Scalar host model of the BinaryConv forward (binarizeInput = 1) computed exactly the way the
// kernel does it: per valid tap, cPerGroup - 2 * popc((xword ^ wword) & mask). Y is float32
// [n, m, outH, outW]. For tests of the packing + valid-tap arithmetic against a plain +-1 sum.
void binaryConvForwardHostModel(const ConvGeometry& g, const uint32_t* xPacked, const int32_t* wPacked,
                                const float* scale, const float* shift, bool relu, float* y);

}  // namespace cmc
