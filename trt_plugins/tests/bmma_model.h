// CPU model of the BMMA BinaryConv kernel: one warp's work per (16-row, 8-column) output tile, run
// lane by lane with the kernel's own index functions (cmc_binary_layout.h: k-step walk, B-operand
// gather, prepared A fragments, column terms, epilogue, packed-output bit positions) and an
// mma.sync.m16n8k256.row.col.s32.b1.b1.s32.and.popc emulated from the PTX ISA fragment tables,
// transcribed here independently of the layout header, so that a mismatch between the two shows.
// Used by the ctest (test_host_bmma.cpp) and, through a C ABI, by tests/trt_plugins (against the
// contract's NumPy reference).
#pragma once

#include <cstdint>

#include "cmc_types.h"

namespace cmc {
namespace model {

// The emulated instruction: c[lane][i] += D for the 32 lanes' a (4 regs), b (2 regs), c (4 regs).
void mmaM16N8K256AndPopc(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4]);

// The BMMA forward as the kernel computes it. xPacked: packed input [n, h, w, wordsPerPixel(c)];
// wPrepared: binaryConvPrepareWeightsHost output; group must be 1 and the geometry BMMA-capable.
// Unpacked output y: float [n, m, ho, wo]; packed output yPacked: int32 [n, ho, wo, wordsPerPixel(m)]
// (either may be nullptr). Returns kInvalidArgument for a geometry the BMMA kernel cannot run.
// fused: as the fused kernel variant computes it — P_a summed lane by lane from the B words of the
// k-loop and reduced over each column's four lanes (instead of the pre-pass), and the column set-up
// and terms from the division-free forms.
// yHalf: the unpacked output as a float16 X gives it, float16 bits [n, m, ho, wo] rounded by BinaryConv's
// float16 rule (math::keepNonzeroHalfBits of the round-to-nearest bits), or nullptr.
Status bmmaForward(const ConvGeometry& g, const int32_t* xPacked, const void* wPrepared, const float* scale,
                   const float* shift, bool relu, float* y, int32_t* yPacked, bool fused = false,
                   uint16_t* yHalf = nullptr);

}  // namespace model
}  // namespace cmc
