// Internal interface between the BinaryConv CUDA files: binary_bmma_kernels.cu (packing, weight
// preparation, the P_a pre-pass and the BMMA tensor-core kernel) and binary_conv_kernels.cu (the
// popcount / float-input kernels and the binaryConvForward* dispatch).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cmc_binary_host.h"
#include "cmc_binary_layout.h"
#include "cmc_kernels.h"

namespace cmc {
namespace detail {

// A BMMA tile shape: a warp's WM x WN m16n8 tiles, WARPS_M x WARPS_N warps per block.
struct BmmaTileShape {
    int32_t wm, wn, warpsM, warpsN;
    bool fused;  // the fused kernel: P_a summed in the k-loop (no pre-pass), division-free set-up
    const char* name;
};

// sm version (e.g. 90) of the current device, 0 when none can be queried.
int32_t currentSmVersion();

// Whether this binary holds code for the BMMA kernel that can run on the current device (compiled
// for sm_80+ SASS or PTX): a build for sm_75 only, JIT-compiled on an Ampere, must not pick it.
bool bmmaCodeForCurrentDevice();

// x NCHW (dtype) -> packed [n, h, w, wordsPerPixel(c)] (no argument checks: callers validated).
Status launchPackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const void* x, uint32_t* xp,
                             cudaStream_t stream);

// The BMMA forward: P_a pre-pass into popA (d.pixOut int32; skipped by the fused tiles), then the
// tensor-core kernel with the forced tile or binaryBmmaTileRule's.
// xp: packed input, prepared: the prepared weights (layout binaryPreparedLayout(g), BMMA part present).
Status launchBmmaForward(const ConvGeometry& g, DType dtype, const uint32_t* xp, const unsigned char* prepared,
                         int32_t* popA, const Epilogue& ep, bool outputPacked, void* y, cudaStream_t stream);

}  // namespace detail
}  // namespace cmc
