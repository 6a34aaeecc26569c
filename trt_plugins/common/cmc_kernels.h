// cmc kernel API: the CUDA implementations of the com.cmc operators, knowing nothing of TensorRT or
// PyTorch. The math each function implements is the operator contract in
// plugins/<op>/contract.json (the one source of truth); this header only fixes the calling convention.
//
// Conventions shared by every entry point:
//  - tensors are dense NCHW (X, Y), weights as the contract lays them out, all device pointers;
//  - scale/shift (the fused epilogue) are float32 device arrays of length M and are always given
//    (ones/zeros when nothing was fused);
//  - the functions only enqueue work on `stream`; they never synchronise and never allocate: scratch
//    memory comes from `workspace`, at least *WorkspaceSize() bytes (may be nullptr when that is 0);
//  - they validate the geometry first and return kInvalidArgument without touching memory when it is
//    inconsistent (see validate()).
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

// DType, Status, statusString, ConvGeometry (+ validate), Epilogue, binaryWordsPerTap and the
// host-side helpers live in the CUDA-free cmc_types.h so that they are unit-tested without a GPU.
#include "cmc_types.h"

namespace cmc {

// ---- AdderConv --------------------------------------------------------------------------------
// Forward: Y = act(scale * (-sum |Xpad - W|) + shift); padded taps contribute |W|.
// x and y in `dtype` (float32, or float16 = FP16 activations); w is float32 for both. The precision
// rule of the contract: x is converted to float exactly, and |x - w|, the sum and the epilogue are
// float32 whatever `dtype` is; y is rounded to `dtype` once. (Trained AdderNet weights reach |w| ~ 60
// and raw sums tens of thousands before a folded BatchNorm subtracts a large mean: half weights or
// half partial sums cost up to ~20% of max|y|.)
size_t adderConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype);
Status adderConvForward(const ConvGeometry& g, DType dtype, const void* x, const float* w,
                        const Epilogue& ep, void* y, void* workspace, size_t workspaceSize,
                        cudaStream_t stream);

// Backward of the raw adder sum A = -sum |Xpad - W| (float32 only; the caller applies the
// epilogue's chain rule to get gradA):
//   gradW[m,c,p,q] = sum_{n,i,j} (Xpad - W) * gradA           (full precision, not sign)
//   gradX[n,c,h,w] = sum_{m,p,q} HardTanh(W - X) * gradA      (padded taps give no input grad)
// then gradW *= eta * sqrt(numel(W)) / max(||gradW||_2, 1e-12) when eta > 0 (AdderNet's adaptive
// scale). Either output pointer may be nullptr to skip it.
size_t adderConvBackwardWorkspaceSize(const ConvGeometry& g);
Status adderConvBackward(const ConvGeometry& g, const float* x, const float* w, const float* gradA,
                         float* gradX, float* gradW, float eta, void* workspace,
                         size_t workspaceSize, cudaStream_t stream);

// ---- BinaryConv -------------------------------------------------------------------------------
// Weights packed as the contract says: int32 [m, kh, kw, ceil(cPerGroup/32)], bit b (LSB first) of
// word k is channel 32k+b, 1 means +1, 0 means -1, tail bits zero.
int32_t binaryWordsPerTap(int32_t cPerGroup);

// Forward: Y = act(scale * sum_valid_taps(xb * wb) + shift); padded taps contribute 0.
// binarizeInput: xb = (x >= 0 ? +1 : -1), else xb = x (float input with binary weights).
size_t binaryConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput);
Status binaryConvForward(const ConvGeometry& g, DType dtype, bool binarizeInput, const void* x,
                         const int32_t* wPacked, const Epilogue& ep, void* y, void* workspace,
                         size_t workspaceSize, cudaStream_t stream);

// Extension (not needed by the TensorRT plugins): packs float weights [m, cPerGroup, kh, kw] in
// `dtype` on the device into the contract's int32 layout above (as binaryPackWeightsHost does), for
// training-time use of the forward kernel on latent float weights.
Status binaryPackWeights(const ConvGeometry& g, DType dtype, const void* w, int32_t* wPacked,
                         cudaStream_t stream);

}  // namespace cmc
