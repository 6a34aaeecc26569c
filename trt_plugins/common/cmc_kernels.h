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
// Takes the contract's W_packed directly: it prepares the weights into the workspace on every call
// and runs binaryConvForwardEx (unpacked input and output), so its workspace includes the prepared
// weights. Callers that run the same weights repeatedly should prepare once and call the Ex form.
size_t binaryConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput);
Status binaryConvForward(const ConvGeometry& g, DType dtype, bool binarizeInput, const void* x,
                         const int32_t* wPacked, const Epilogue& ep, void* y, void* workspace,
                         size_t workspaceSize, cudaStream_t stream);

// ---- BinaryConv: packed activations, prepared weights, kernel choice -----------------------------
// Packed activations (1-bit activations between binary layers): int32 [n, h, w,
// binaryPackedWordsPerPixel(c)] (NHWC bits), words per pixel = 4 * ceil(c / 128) (128-bit aligned),
// bit b (LSB first) of word k = channel 32k + b, 1 <=> value >= 0 (binarize = +1), pad bits 0.
// Only for group == 1 layers. (binaryPackedWordsPerPixel, BinaryIO, BinaryKernel and the size
// functions are CUDA-free and declared in cmc_types.h.)
//   binaryPackActivations:   NCHW float/half x -> packed (x >= 0 -> 1; NaN -> 0, as binarize gives -1)
//   binaryUnpackActivations: packed -> NCHW +-1 in `dtype` (pad bits ignored)
// xPacked must be 4-byte aligned; n, c, h, w > 0 and n*h*w*wordsPerPixel < 2^31 (else kInvalidArgument
// / kUnsupported).
Status binaryPackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const void* x,
                             int32_t* xPacked, cudaStream_t stream);
Status binaryUnpackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const int32_t* xPacked,
                               void* x, cudaStream_t stream);

// Weight preparation, once per weights (plugin configure / first call): re-lays the contract's
// W_packed into what the kernels read: a copy in the contract layout (popcount and float-input
// kernels) and, where the geometry allows the BMMA kernel (group == 1, kh*kw <= 64), the weights in
// m16n8k256 A-fragment order plus a per-filter table of weight popcounts over every rectangle of
// valid taps. So one prepared buffer serves whichever kernel Ex picks for (g, device): the choice
// rule is deterministic in (g, sm version) (binaryConvChooseKernel), and the prepared bytes depend
// only on (m, c, groups, kh, kw) — n, h, w, strides, pads and dilations may change without
// re-preparing, and the bytes are the same on every device. wPrepared must be 16-byte aligned and
// hold binaryConvPreparedWeightsSize(g) bytes; tail bits of W_packed are ignored (masked).
Status binaryConvPrepareWeights(const ConvGeometry& g, const int32_t* wPacked, void* wPrepared, cudaStream_t s);

// Forward with prepared weights and optional packed input / output.
// inputPacked: x is packed (binarizeInput must be true, group must be 1). outputPacked: y is int32
// packed [n, ho, wo, binaryPackedWordsPerPixel(m)] holding bit(act(scale*B + shift) >= 0) — the sign
// the next binarizing layer would take of the unpacked output, computed with exactly the same
// epilogue arithmetic as the unpacked output (including the rounding to `dtype`), so packed chains
// equal the unpacked path bit for bit. `dtype` is the dtype of the unpacked x / y (and of the
// epilogue's rounding when both are packed). kInvalidArgument for inconsistent geometry / flags /
// pointers / alignment (workspace and wPrepared 16-byte aligned), kUnsupported where no kernel
// exists for the combination.
Status binaryConvForwardEx(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io, const void* x,
                           const void* wPrepared, const Epilogue& ep, void* y, void* workspace,
                           size_t workspaceSize, cudaStream_t stream);

// Same, with the kernel named (tests and benchmarks): kAuto is binaryConvForwardEx; kBmma returns
// kUnsupported where the geometry or the device (sm < 80, or a binary built without sm_80+ code for
// it) cannot run it; kPopcount forces the XNOR/popcount kernel (binarizeInput only).
Status binaryConvForwardWith(BinaryKernel kernel, const ConvGeometry& g, DType dtype, bool binarizeInput,
                             BinaryIO io, const void* x, const void* wPrepared, const Epilogue& ep, void* y,
                             void* workspace, size_t workspaceSize, cudaStream_t stream);

// Tuning only (benchmarks, tests): the BMMA kernel's tile shapes in this build (index -> a name
// such as "64x64 (warp 2x4, 2x2 warps)", nullptr outside [0, count)), and forcing one of them for
// the calling host thread's later launches (-1: back to the built-in rule; kInvalidArgument outside
// [-1, count)). Every tile shape computes the same exact result; only the speed differs.
int32_t binaryBmmaTileCount();
const char* binaryBmmaTileName(int32_t tile);
Status binaryBmmaForceTile(int32_t tile);

// The kernel binaryConvForwardEx runs for (g, binarizeInput) on the current device (the rule of
// binaryConvChooseKernel applied to the device's sm version and to what this binary holds for it).
BinaryKernel binaryConvKernelForCurrentDevice(const ConvGeometry& g, bool binarizeInput);

// Extension (not needed by the TensorRT plugins): packs float weights [m, cPerGroup, kh, kw] in
// `dtype` on the device into the contract's int32 layout above (as binaryPackWeightsHost does), for
// training-time use of the forward kernel on latent float weights.
Status binaryPackWeights(const ConvGeometry& g, DType dtype, const void* w, int32_t* wPacked,
                         cudaStream_t stream);

}  // namespace cmc
