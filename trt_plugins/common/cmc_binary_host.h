// Host-side (CUDA-free) internals of the BinaryConv kernels: the layouts of the prepared weights and
// of binaryConvForwardEx's workspace, and host versions of the packing / preparation (the same
// functions of cmc_binary_layout.h the kernels run), used by the launchers and the CPU tests.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cmc_binary_layout.h"
#include "cmc_types.h"

namespace cmc {

// Where each part of the prepared weights lives (see bits::PreparedLayout); bmma is
// binaryBmmaSupportsGeometry(g). total == 0 for an invalid g.
bits::PreparedLayout binaryPreparedLayout(const ConvGeometry& g);

// binaryConvForwardEx's workspace when `kernel` (kBmma or kPopcount) runs: byte offsets of each
// region (only the sizes of regions the path uses are nonzero), each 256-byte aligned.
struct BinaryExWorkspace {
    size_t packedOff = 0, packedBytes = 0;   // binarized + packed input (when not inputPacked)
    size_t popAOff = 0, popABytes = 0;       // BMMA: P_a per output pixel (int32)
    size_t stagingOff = 0, stagingBytes = 0; // outputPacked on a path without packed output: Y in dtype
    size_t wmOff = 0, wmBytes = 0;           // float input: +-1 weight matrix in dtype
    size_t total = 0;
};
BinaryExWorkspace binaryExWorkspace(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io,
                                    BinaryKernel kernel);

// The BMMA kernel's tile shape for a geometry on a GPU with `smCount` multiprocessors: an index of the
// shapes binary_bmma_kernels.cu holds (kBmmaTiles: 1 = 64x128 block, 2 = 128x64, 5 = 128x32 of 4x2-tile
// warps, 7 = 64x64 of 2x2-tile warps). Tuned from the H200 sweep of every shape on the bench_layers
// layers (trt_plugins/KERNELS.md): large problems (M * pixels * k-steps per SM above ~110k) take the
// big tiles, the rest small tiles, which keep more warps per SM (fewer registers, more blocks).
int32_t binaryBmmaTileRule(const ConvGeometry& g, int32_t smCount);

// kSuccess or the reason the flags cannot go together (kInvalidArgument): inputPacked needs
// binarizeInput and group 1. Geometry is validated separately.
Status binaryCheckIO(const ConvGeometry& g, bool binarizeInput, BinaryIO io);

// Host versions of the device kernels, for tests.
// x [n, c, h, w] float -> packed int32 [n, h, w, binaryPackedWordsPerPixel(c)].
void binaryPackActivationsPackedHost(int32_t n, int32_t c, int32_t h, int32_t w, const float* x, int32_t* packed);
// packed -> +-1 float [n, c, h, w].
void binaryUnpackActivationsHost(int32_t n, int32_t c, int32_t h, int32_t w, const int32_t* packed, float* x);
// The prepared weights (binaryPreparedLayout(g).total bytes at `prepared`, 4-byte aligned).
void binaryConvPrepareWeightsHost(const ConvGeometry& g, const int32_t* wPacked, void* prepared);

}  // namespace cmc
