// BinaryConv CUDA kernels.
//
// binarize_input = 1: X is binarized and bit-packed once into the workspace (uint32 [n, h, w,
// groups, words], tail bits zero), then an XNOR/popcount implicit GEMM computes, per output,
//     B = sum_valid_taps (Cg - 2 * popc(xword ^ wword))
// by accumulating popc((x ^ w) & mask) with mask = 0 for padded taps (and for the tail bits), so
// padded taps contribute exactly 0 and only valid taps are counted: B = Cg * nValid - 2 * mismatches,
// nValid from the closed-form valid-tap count of cmc_conv_math.h.
//
// binarize_input = 0: the packed weights are expanded to a +-1 matrix in the workspace and the float
// implicit-GEMM kernel of cmc_float_conv.cuh computes sum x * w (padded taps read 0).
//
// Also here: the binaryConvForward* dispatch between these kernels and the BMMA tensor-core kernel
// (binary_bmma_kernels.cu), packed input / output included.
#include <algorithm>
#include <cstdint>

#include "binary_conv_internal.cuh"
#include "cmc_float_conv.cuh"

namespace cmc {
namespace detail {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void __launch_bounds__(kThreads)
packActivationsKernel(ConvParams p, int nw, const T* __restrict__ x, uint32_t* __restrict__ xp) {
    // one thread per packed word; hw fastest so that the 32 channel reads of a warp are coalesced
    const int64_t total = static_cast<int64_t>(p.n) * p.groups * nw * p.hw;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int hwI = static_cast<int>(idx % p.hw);
        int64_t rest = idx / p.hw;
        const int word = static_cast<int>(rest % nw);
        rest /= nw;
        const int gi = static_cast<int>(rest % p.groups);
        const int nn = static_cast<int>(rest / p.groups);
        const int cBase = gi * p.cg + 32 * word;
        const int cnt = min(32, p.cg - 32 * word);
        const T* src = x + (static_cast<int64_t>(nn) * p.c + cBase) * p.hw + hwI;
        uint32_t bits = 0;
        for (int b = 0; b < cnt; ++b)
            if (toFloat<T>(src[static_cast<int64_t>(b) * p.hw]) >= 0.0f) bits |= (1u << b);
        xp[((static_cast<int64_t>(nn) * p.hw + hwI) * p.groups + gi) * nw + word] = bits;
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
packWeightsKernel(ConvParams p, int nw, const T* __restrict__ w, uint32_t* __restrict__ wp) {
    const int64_t total = static_cast<int64_t>(p.m) * p.taps * nw;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int word = static_cast<int>(idx % nw);
        const int64_t rest = idx / nw;
        const int t = static_cast<int>(rest % p.taps);
        const int m = static_cast<int>(rest / p.taps);
        const int cnt = min(32, p.cg - 32 * word);
        uint32_t bits = 0;
        for (int b = 0; b < cnt; ++b) {
            const int c = 32 * word + b;
            if (toFloat<T>(w[(static_cast<int64_t>(m) * p.cg + c) * p.taps + t]) >= 0.0f) bits |= (1u << b);
        }
        wp[idx] = bits;
    }
}

// wm[m, c * taps + t] = +-1 from the packed weights (k order of the float kernel).
template <typename T>
__global__ void __launch_bounds__(kThreads)
unpackWeightsKernel(ConvParams p, int nw, const uint32_t* __restrict__ wp, T* __restrict__ wm) {
    const int64_t total = static_cast<int64_t>(p.m) * p.kRed;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int t = static_cast<int>(idx % p.taps);
        const int64_t rest = idx / p.taps;
        const int c = static_cast<int>(rest % p.cg);
        const int m = static_cast<int>(rest / p.cg);
        const uint32_t word = wp[(static_cast<int64_t>(m) * p.taps + t) * nw + (c >> 5)];
        wm[idx] = fromFloat<T>(((word >> (c & 31)) & 1u) ? 1.0f : -1.0f);
    }
}

// XNOR-popcount implicit GEMM: BM output channels x BN = 4096 / BM output pixels per 256-thread
// block, 4 x 4 per thread, reduction over k = (p * kw + q) * words + word in tiles of 16 words.
// The input is bit-packed with `pixStride` words between neighbouring pixels: the kernel's own
// layout [n, h, w, groups, nw] (pixStride = groups * nw) or packed activations [n, h, w, wpp]
// (group 1, pixStride = wpp >= nw; words past nw are never read).
template <int BM, typename T>
__global__ void __launch_bounds__(kThreads)
binaryPopcConvKernel(ConvParams p, int nw, int pixStride, const uint32_t* __restrict__ xp, const uint32_t* __restrict__ wp,
                     const float* __restrict__ scale, const float* __restrict__ shift, bool relu,
                     T* __restrict__ y) {
    constexpr int BN = 4096 / BM;
    constexpr int BK = 16;
    constexpr int TXN = BN / 4, TYM = BM / 4;
    constexpr int XR = BK * BN / kThreads;
    constexpr int WR = BK * BM / kThreads;
    static_assert(XR >= 1 && WR >= 1 && BK % WR == 0 && kThreads % BN == 0, "loader shape");

    __shared__ uint32_t xs[BK][BN];
    __shared__ uint32_t ms[BK][BN];
    __shared__ uint32_t ws[BK][BM];

    const int kTot = p.taps * nw;
    const int tid = threadIdx.x;
    const int grp = blockIdx.z;
    const int m0 = blockIdx.y * BM;
    const int pix0 = blockIdx.x * BN;
    const int tailBits = p.cg - 32 * (nw - 1);
    const uint32_t tailMask = tailBits >= 32 ? 0xffffffffu : ((1u << tailBits) - 1u);

    // X loader
    const int xlJ = tid % BN;
    const int xlK = (tid / BN) * XR;
    const int pixL = pix0 + xlJ;
    const bool pixOk = pixL < p.pixOut;
    int ih0 = 0, iw0 = 0;
    const uint32_t* xg = xp;
    if (pixOk) {
        const int nn = pixL / p.howo;
        const int r = pixL - nn * p.howo;
        const int oh = r / p.wo;
        const int ow = r - oh * p.wo;
        ih0 = oh * p.sh - p.pt;
        iw0 = ow * p.sw - p.pl;
        xg = xp + static_cast<int64_t>(nn) * p.hw * pixStride + static_cast<int64_t>(grp) * nw;
    }
    math::Radix3 cursor = math::radix3(xlK, p.kw, nw);  // (pr, q, word)
    const math::Radix3 tileStep = math::radix3(BK, p.kw, nw);

    // W loader
    const int wlM = (tid * WR) / BK;
    const int wlK = (tid * WR) % BK;
    const bool mOk = m0 + wlM < p.mg;
    const uint32_t* wg = wp + static_cast<int64_t>(grp * p.mg + (mOk ? m0 + wlM : 0)) * kTot;

    uint32_t xr[XR], mr[XR], wr[WR];
    auto loadTile = [&](int k0, math::Radix3 c) {
#pragma unroll
        for (int r = 0; r < XR; ++r) {
            const int k = k0 + xlK + r;
            uint32_t v = 0, mask = 0;
            if (pixOk && k < kTot) {
                const int ih = ih0 + c.d0 * p.dh;
                const int iw = iw0 + c.d1 * p.dw;
                if (static_cast<unsigned>(ih) < static_cast<unsigned>(p.h) &&
                    static_cast<unsigned>(iw) < static_cast<unsigned>(p.w)) {
                    v = xg[static_cast<int64_t>(ih * p.w + iw) * pixStride + c.d2];
                    mask = (c.d2 == nw - 1) ? tailMask : 0xffffffffu;
                }
            }
            xr[r] = v;
            mr[r] = mask;
            math::radix3Inc(c, p.kw, nw);
        }
#pragma unroll
        for (int r = 0; r < WR; ++r) {
            const int k = k0 + wlK + r;
            wr[r] = (mOk && k < kTot) ? wg[k] : 0u;
        }
    };

    const int tx = tid % TXN, ty = tid / TXN;
    int acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0;

    loadTile(0, cursor);
    for (int k0 = 0; k0 < kTot; k0 += BK) {
#pragma unroll
        for (int r = 0; r < XR; ++r) {
            xs[xlK + r][xlJ] = xr[r];
            ms[xlK + r][xlJ] = mr[r];
        }
#pragma unroll
        for (int r = 0; r < WR; ++r) ws[wlK + r][wlM] = wr[r];
        __syncthreads();
        if (k0 + BK < kTot) {
            math::radix3Add(cursor, tileStep, p.kw, nw);
            loadTile(k0 + BK, cursor);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            uint32_t a[4], b[4], mk[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = ws[kk][ty + TYM * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                b[j] = xs[kk][tx + TXN * j];
                mk[j] = ms[kk][tx + TXN * j];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] += __popc((a[i] ^ b[j]) & mk[j]);  // LOP3 + POPC
        }
        __syncthreads();
    }

#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int pix = pix0 + tx + TXN * j;
        if (pix >= p.pixOut) continue;
        const int nn = pix / p.howo;
        const int r = pix - nn * p.howo;
        const int oh = r / p.wo;
        const int ow = r - oh * p.wo;
        const int nValid = math::validTaps1D(oh, p.h, p.kh, p.sh, p.pt, p.dh) *
                           math::validTaps1D(ow, p.w, p.kw, p.sw, p.pl, p.dw);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int ml = m0 + ty + TYM * i;
            if (ml >= p.mg) continue;
            const int mAbs = grp * p.mg + ml;
            const float b = static_cast<float>(p.cg * nValid - 2 * acc[i][j]);
            y[(static_cast<int64_t>(nn) * p.m + mAbs) * p.howo + r] =
                binaryOut<T>(epilogue(b, scale[mAbs], shift[mAbs], relu));
        }
    }
}

int gridFor(int64_t total) {
    return static_cast<int>(std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 16));
}

template <typename T>
Status launchPopcount(const ConvParams& p, int nw, int pixStride, const uint32_t* xp, const uint32_t* wp,
                      const Epilogue& ep, T* y, cudaStream_t stream) {
    const int bm = chooseTileM(p.mg);
    const dim3 grid(ceilDiv(p.pixOut, 4096 / bm), ceilDiv(p.mg, bm), p.groups);
    if (grid.y > 65535u) return Status::kUnsupported;
    switch (bm) {
        case 16: binaryPopcConvKernel<16, T><<<grid, kThreads, 0, stream>>>(p, nw, pixStride, xp, wp, ep.scale, ep.shift, ep.relu, y); break;
        case 32: binaryPopcConvKernel<32, T><<<grid, kThreads, 0, stream>>>(p, nw, pixStride, xp, wp, ep.scale, ep.shift, ep.relu, y); break;
        default: binaryPopcConvKernel<64, T><<<grid, kThreads, 0, stream>>>(p, nw, pixStride, xp, wp, ep.scale, ep.shift, ep.relu, y); break;
    }
    return launchStatus();
}

// The CUDA-core paths: XNOR/popcount (binarizeInput) or +-1 weights in the float kernel. Writes Y in
// T (NCHW) to yT. xIn: T NCHW, or packed activations when inputPacked.
template <typename T>
Status cudaCoreForwardT(const ConvParams& p, bool binarizeInput, bool inputPacked, const void* xIn,
                        const uint32_t* wContract, const Epilogue& ep, T* yT, unsigned char* ws,
                        const BinaryExWorkspace& L, cudaStream_t stream) {
    const int nw = binaryWordsPerTap(p.cg);
    if (binarizeInput) {
        if (inputPacked)
            return launchPopcount<T>(p, nw, bits::wordsPerPixel(p.c), static_cast<const uint32_t*>(xIn), wContract, ep,
                                     yT, stream);
        uint32_t* xp = reinterpret_cast<uint32_t*>(ws + L.packedOff);
        const int64_t words = static_cast<int64_t>(p.n) * p.groups * nw * p.hw;
        packActivationsKernel<T><<<gridFor(words), kThreads, 0, stream>>>(p, nw, static_cast<const T*>(xIn), xp);
        if (launchStatus() != Status::kSuccess) return Status::kCudaError;
        return launchPopcount<T>(p, nw, p.groups * nw, xp, wContract, ep, yT, stream);
    }
    T* wm = reinterpret_cast<T*>(ws + L.wmOff);
    unpackWeightsKernel<T><<<gridFor(static_cast<int64_t>(p.m) * p.kRed), kThreads, 0, stream>>>(p, nw, wContract, wm);
    if (launchStatus() != Status::kSuccess) return Status::kCudaError;
    return launchFloatConv<FloatOp::kMul, T>(p, static_cast<const T*>(xIn), wm, ep, yT, stream);
}

bool aligned(const void* ptr, size_t a) { return reinterpret_cast<uintptr_t>(ptr) % a == 0; }

}  // namespace
}  // namespace detail

BinaryKernel binaryConvKernelForCurrentDevice(const ConvGeometry& g, bool binarizeInput) {
    const BinaryKernel k = binaryConvChooseKernel(g, binarizeInput, detail::currentSmVersion());
    if (k == BinaryKernel::kBmma && !detail::bmmaCodeForCurrentDevice()) return BinaryKernel::kPopcount;
    return k;
}

Status binaryConvForwardWith(BinaryKernel kernel, const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io,
                             const void* x, const void* wPrepared, const Epilogue& ep, void* y, void* workspace,
                             size_t workspaceSize, cudaStream_t stream) {
    const Status s = detail::checkGeometry(g);
    if (s != Status::kSuccess) return s;
    if (!x || !wPrepared || !y || !ep.scale || !ep.shift) return Status::kInvalidArgument;
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16) return Status::kUnsupported;
    if (binaryCheckIO(g, binarizeInput, io) != Status::kSuccess) return Status::kInvalidArgument;
    const size_t elem = dtype == DType::kFloat16 ? 2 : 4;
    if (!detail::aligned(wPrepared, 16) || !detail::aligned(x, io.inputPacked ? 4 : elem) ||
        !detail::aligned(y, io.outputPacked ? 4 : elem) || !detail::aligned(ep.scale, 4) || !detail::aligned(ep.shift, 4))
        return Status::kInvalidArgument;
    if (kernel != BinaryKernel::kAuto && kernel != BinaryKernel::kPopcount && kernel != BinaryKernel::kBmma)
        return Status::kInvalidArgument;
    BinaryKernel k = kernel == BinaryKernel::kAuto ? binaryConvKernelForCurrentDevice(g, binarizeInput) : kernel;
    if (k == BinaryKernel::kBmma &&
        (!binarizeInput || !binaryBmmaSupportsGeometry(g) || !detail::bmmaCodeForCurrentDevice()))
        return Status::kUnsupported;
    if (!binarizeInput) k = BinaryKernel::kPopcount;  // the float-input path of the CUDA-core family
    const BinaryExWorkspace L = binaryExWorkspace(g, dtype, binarizeInput, io, k);
    if (L.total > 0 && (workspace == nullptr || workspaceSize < L.total || !detail::aligned(workspace, 16)))
        return Status::kInvalidArgument;
    unsigned char* ws = static_cast<unsigned char*>(workspace);
    const bits::PreparedLayout P = binaryPreparedLayout(g);
    const unsigned char* prepared = static_cast<const unsigned char*>(wPrepared);

    if (k == BinaryKernel::kBmma) {
        const uint32_t* xp = static_cast<const uint32_t*>(x);
        if (!io.inputPacked) {
            uint32_t* packed = reinterpret_cast<uint32_t*>(ws + L.packedOff);
            const Status ps = detail::launchPackActivations(g.n, g.c, g.h, g.w, dtype, x, packed, stream);
            if (ps != Status::kSuccess) return ps;
            xp = packed;
        }
        return detail::launchBmmaForward(g, dtype, xp, prepared, reinterpret_cast<int32_t*>(ws + L.popAOff), ep,
                                         io.outputPacked, y, stream);
    }
    const detail::ConvParams p = detail::makeParams(g);
    const uint32_t* wContract = reinterpret_cast<const uint32_t*>(prepared + P.contractOff);
    void* yT = io.outputPacked ? static_cast<void*>(ws + L.stagingOff) : y;
    Status cs;
    if (dtype == DType::kFloat32)
        cs = detail::cudaCoreForwardT<float>(p, binarizeInput, io.inputPacked, x, wContract, ep, static_cast<float*>(yT),
                                             ws, L, stream);
    else
        cs = detail::cudaCoreForwardT<__half>(p, binarizeInput, io.inputPacked, x, wContract, ep,
                                              static_cast<__half*>(yT), ws, L, stream);
    if (cs != Status::kSuccess || !io.outputPacked) return cs;
    // packed output of a path without one: the staged Y, packed by the sign its dtype holds
    return detail::launchPackActivations(g.n, g.m, g.outH(), g.outW(), dtype, yT, static_cast<uint32_t*>(y), stream);
}

Status binaryConvForwardEx(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io, const void* x,
                           const void* wPrepared, const Epilogue& ep, void* y, void* workspace, size_t workspaceSize,
                           cudaStream_t stream) {
    return binaryConvForwardWith(BinaryKernel::kAuto, g, dtype, binarizeInput, io, x, wPrepared, ep, y, workspace,
                                 workspaceSize, stream);
}

Status binaryConvForward(const ConvGeometry& g, DType dtype, bool binarizeInput, const void* x,
                         const int32_t* wPacked, const Epilogue& ep, void* y, void* workspace,
                         size_t workspaceSize, cudaStream_t stream) {
    const Status s = detail::checkGeometry(g);
    if (s != Status::kSuccess) return s;
    if (!x || !wPacked || !y || !ep.scale || !ep.shift) return Status::kInvalidArgument;
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16) return Status::kUnsupported;
    const size_t need = binaryConvForwardWorkspaceSize(g, dtype, binarizeInput);
    if (workspace == nullptr || workspaceSize < need || !detail::aligned(workspace, 16)) return Status::kInvalidArgument;
    // prepare into the front of the workspace (cheap: the weights are bits), then the Ex path
    const size_t prepBytes = bits::alignUp256(binaryConvPreparedWeightsSize(g));
    const Status ps = binaryConvPrepareWeights(g, wPacked, workspace, stream);
    if (ps != Status::kSuccess) return ps;
    unsigned char* rest = static_cast<unsigned char*>(workspace) + prepBytes;
    return binaryConvForwardEx(g, dtype, binarizeInput, BinaryIO{}, x, workspace, ep, y, rest, workspaceSize - prepBytes,
                               stream);
}

Status binaryPackWeights(const ConvGeometry& g, DType dtype, const void* w, int32_t* wPacked, cudaStream_t stream) {
    const Status s = detail::checkGeometry(g);
    if (s != Status::kSuccess) return s;
    if (!w || !wPacked) return Status::kInvalidArgument;
    const detail::ConvParams p = detail::makeParams(g);
    const int nw = binaryWordsPerTap(p.cg);
    const int64_t total = static_cast<int64_t>(p.m) * p.taps * nw;
    uint32_t* out = reinterpret_cast<uint32_t*>(wPacked);
    if (dtype == DType::kFloat32)
        detail::packWeightsKernel<float><<<detail::gridFor(total), detail::kThreads, 0, stream>>>(
            p, nw, static_cast<const float*>(w), out);
    else if (dtype == DType::kFloat16)
        detail::packWeightsKernel<__half><<<detail::gridFor(total), detail::kThreads, 0, stream>>>(
            p, nw, static_cast<const __half*>(w), out);
    else
        return Status::kUnsupported;
    return detail::launchStatus();
}

}  // namespace cmc
