// AdderConv CUDA kernels: forward (FP32 or FP16 X/Y with float32 W; float32 |x - w|, sum and fused
// epilogue whatever the I/O type — the contract's precision rule) and the
// AdderNet training backward (full-precision weight gradient with the adaptive scale, HardTanh
// input gradient). None of them builds the N x M x (C kh kw) x L difference tensor of the research
// code's unfold formulation, nor an im2col buffer.
#include <algorithm>

#include "cmc_float_conv.cuh"

namespace cmc {
namespace detail {
namespace {

constexpr int kThreads = 256;

// ---------------------------------------------------------------------------------------------
// Weight gradient: gW[m, k] = sum_pix (Xcol[k, pix] - W[m, k]) * gA[m, pix], k = (c*kh + p)*kw + q.
// A block owns BM channels x BKC = 4096 / BM k-columns and one slice of the pixels (split-K over
// pixels for parallelism); slices are added with atomicAdd into the zeroed gW. Padded taps read
// x = 0 and so contribute -W * gA, exactly what the unfold formulation computes.
template <int BM>
__global__ void __launch_bounds__(kThreads)
adderGradWKernel(ConvParams p, const float* __restrict__ x, const float* __restrict__ w,
                 const float* __restrict__ gA, float* __restrict__ gW, int pixPerSplit) {
    constexpr int BKC = 4096 / BM;  // k columns per block
    constexpr int BP = 16;          // pixels per shared-memory tile
    constexpr int TXN = BKC / 4, TYM = BM / 4;
    constexpr int XR = BP * BKC / kThreads;  // X loads per thread (consecutive pixels, one k)
    constexpr int GR = BP * BM / kThreads;   // gA loads per thread (consecutive pixels, one m)
    constexpr int GPR = BP / GR;             // threads per gA row
    static_assert(XR >= 1 && GR >= 1 && kThreads % BKC == 0, "loader shape");

    __shared__ __align__(16) float xs[BP][BKC];
    __shared__ __align__(16) float gs[BP][BM];

    const int tid = threadIdx.x;
    const int grp = blockIdx.z % p.groups;
    const int split = blockIdx.z / p.groups;
    const int m0 = blockIdx.y * BM;
    const int kc0 = blockIdx.x * BKC;
    const int pixBegin = split * pixPerSplit;
    const int pixEnd = min(p.pixOut, pixBegin + pixPerSplit);
    if (pixBegin >= pixEnd) return;

    // X loader: k column fixed for the thread.
    const int xlJ = tid % BKC;
    const int xlP = (tid / BKC) * XR;
    const int kL = kc0 + xlJ;
    const bool kOk = kL < p.kRed;
    const math::Radix3 kd = math::radix3(kOk ? kL : 0, p.kh, p.kw);  // (c, pr, q)
    const float* xc = x + (static_cast<int64_t>(grp) * p.cg + kd.d0) * p.hw;
    const int tapDy = kd.d1 * p.dh - p.pt, tapDx = kd.d2 * p.dw - p.pl;
    // pixel cursor (n, oh, ow)
    math::Radix3 xCur = math::radix3(pixBegin + xlP, p.ho, p.wo);
    const math::Radix3 pixStep = math::radix3(BP, p.ho, p.wo);

    // gA loader: channel row fixed for the thread.
    const int glM = tid / GPR;
    const int glP = (tid % GPR) * GR;
    const bool gmOk = m0 + glM < p.mg;
    const int gmAbs = grp * p.mg + (gmOk ? m0 + glM : 0);
    math::Radix3 gCur = math::radix3(pixBegin + glP, 1, p.howo);  // (n, 0, ohw)
    const math::Radix3 gStep = math::radix3(BP, 1, p.howo);

    float xr[XR], gr[GR];
    auto loadTile = [&](int pt0, math::Radix3 xc0, math::Radix3 gc0) {
#pragma unroll
        for (int r = 0; r < XR; ++r) {
            const int pix = pt0 + xlP + r;
            float v = 0.0f;
            if (kOk && pix < pixEnd) {
                const int ih = xc0.d1 * p.sh + tapDy;
                const int iw = xc0.d2 * p.sw + tapDx;
                if (static_cast<unsigned>(ih) < static_cast<unsigned>(p.h) &&
                    static_cast<unsigned>(iw) < static_cast<unsigned>(p.w))
                    v = xc[static_cast<int64_t>(xc0.d0) * p.c * p.hw + ih * p.w + iw];
            }
            xr[r] = v;
            math::radix3Inc(xc0, p.ho, p.wo);
        }
#pragma unroll
        for (int r = 0; r < GR; ++r) {
            const int pix = pt0 + glP + r;
            gr[r] = (gmOk && pix < pixEnd)
                        ? gA[(static_cast<int64_t>(gc0.d0) * p.m + gmAbs) * p.howo + gc0.d2]
                        : 0.0f;
            math::radix3Inc(gc0, 1, p.howo);
        }
    };

    const int tx = tid % TXN, ty = tid / TXN;
    float wreg[4][4], acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int ml = m0 + ty + TYM * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = kc0 + tx + TXN * j;
            wreg[i][j] = (ml < p.mg && k < p.kRed) ? w[static_cast<int64_t>(grp * p.mg + ml) * p.kRed + k] : 0.0f;
            acc[i][j] = 0.0f;
        }
    }

    loadTile(pixBegin, xCur, gCur);
    for (int pt0 = pixBegin; pt0 < pixEnd; pt0 += BP) {
#pragma unroll
        for (int r = 0; r < XR; ++r) xs[xlP + r][xlJ] = xr[r];
#pragma unroll
        for (int r = 0; r < GR; ++r) gs[glP + r][glM] = gr[r];
        __syncthreads();
        if (pt0 + BP < pixEnd) {
            math::radix3Add(xCur, pixStep, p.ho, p.wo);
            math::radix3Add(gCur, gStep, 1, p.howo);
            loadTile(pt0 + BP, xCur, gCur);
        }
#pragma unroll
        for (int pp = 0; pp < BP; ++pp) {
            float g[4], xv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) g[i] = gs[pp][ty + TYM * i];
#pragma unroll
            for (int j = 0; j < 4; ++j) xv[j] = xs[pp][tx + TXN * j];
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(xv[j] - wreg[i][j], g[i], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int ml = m0 + ty + TYM * i;
        if (ml >= p.mg) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int k = kc0 + tx + TXN * j;
            if (k < p.kRed) atomicAdd(&gW[static_cast<int64_t>(grp * p.mg + ml) * p.kRed + k], acc[i][j]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Input gradient: gX[n, c, h, w] = sum_{m, taps reading (h, w)} HardTanh(W[m, c, tap] - x) * gA[n, m, oh, ow].
// A block owns BC input channels x BN = 4096 / BC input pixels of one group; it walks the taps and,
// per tap, the group's output channels in chunks of 16. Padded positions are never visited, so
// they give no gradient.
template <int BC>
__global__ void __launch_bounds__(kThreads)
adderGradXKernel(ConvParams p, const float* __restrict__ x, const float* __restrict__ w,
                 const float* __restrict__ gA, float* __restrict__ gX) {
    constexpr int BN = 4096 / BC;
    constexpr int BMK = 16;  // output channels per shared-memory tile
    constexpr int TXN = BN / 4, TYM = BC / 4;
    constexpr int GR = BMK * BN / kThreads;  // gA loads per thread (one pixel, consecutive m)
    constexpr int WR = BMK * BC / kThreads;  // W loads per thread
    static_assert(GR >= 1 && WR >= 1 && kThreads % BN == 0, "loader shape");

    __shared__ __align__(16) float ws[BMK][BC];
    __shared__ __align__(16) float gs[BMK][BN];

    const int tid = threadIdx.x;
    const int grp = blockIdx.z;
    const int c0 = blockIdx.y * BC;
    const int pix0 = blockIdx.x * BN;
    const int tx = tid % TXN, ty = tid / TXN;

    // This thread's outputs and their x values.
    float xv[4][4], acc[4][4];
    int64_t outOff[4];  // per pixel column: n * c * hw + hw offset (or -1)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int pix = pix0 + 2 * tx + (BN / 2) * (j / 2) + (j % 2);
        if (pix < p.pixIn) {
            const int nn = pix / p.hw;
            outOff[j] = static_cast<int64_t>(nn) * p.c * p.hw + (pix - nn * p.hw);
        } else {
            outOff[j] = -1;
        }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int cl = c0 + ty + TYM * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            acc[i][j] = 0.0f;
            xv[i][j] = (cl < p.cg && outOff[j] >= 0)
                           ? x[outOff[j] + static_cast<int64_t>(grp * p.cg + cl) * p.hw]
                           : 0.0f;
        }
    }

    // gA loader: pixel column fixed for the thread.
    const int glJ = tid % BN;
    const int glM = (tid / BN) * GR;
    const int pixL = pix0 + glJ;
    const bool pixOk = pixL < p.pixIn;
    int nn = 0, hh = 0, ww = 0;
    if (pixOk) {
        nn = pixL / p.hw;
        const int r = pixL - nn * p.hw;
        hh = r / p.w;
        ww = r - hh * p.w;
    }
    // W loader
    const int wlM = (tid * WR) / BC;
    const int wlC = (tid * WR) % BC;

    for (int t = 0; t < p.taps; ++t) {
        const int pr = t / p.kw, q = t - pr * p.kw;
        const int ohn = hh + p.pt - pr * p.dh;
        const int own = ww + p.pl - q * p.dw;
        bool valid = pixOk && ohn >= 0 && own >= 0 && ohn % p.sh == 0 && own % p.sw == 0;
        const int oh = valid ? ohn / p.sh : 0, ow = valid ? own / p.sw : 0;
        valid = valid && oh < p.ho && ow < p.wo;
        const float* gBase = gA + (static_cast<int64_t>(nn) * p.m + grp * p.mg) * p.howo + oh * p.wo + ow;

        for (int mb = 0; mb < p.mg; mb += BMK) {
#pragma unroll
            for (int r = 0; r < GR; ++r) {
                const int m = mb + glM + r;
                gs[glM + r][glJ] = (valid && m < p.mg) ? gBase[static_cast<int64_t>(m) * p.howo] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < WR; ++r) {
                const int m = mb + wlM;
                const int cl = c0 + wlC + r;
                ws[wlM][wlC + r] = (m < p.mg && cl < p.cg)
                                       ? w[(static_cast<int64_t>(grp * p.mg + m) * p.cg + cl) * p.taps + t]
                                       : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int mk = 0; mk < BMK; ++mk) {
                float a[4], g[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) a[i] = ws[mk][ty + TYM * i];
#pragma unroll
                for (int jj = 0; jj < 2; ++jj) {
                    const float2 v = *reinterpret_cast<const float2*>(&gs[mk][2 * tx + (BN / 2) * jj]);
                    g[2 * jj] = v.x;
                    g[2 * jj + 1] = v.y;
                }
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j)
                        acc[i][j] = fmaf(fminf(fmaxf(a[i] - xv[i][j], -1.0f), 1.0f), g[j], acc[i][j]);
            }
            __syncthreads();
        }
    }

#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int cl = c0 + ty + TYM * i;
        if (cl >= p.cg) continue;
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (outOff[j] >= 0) gX[outOff[j] + static_cast<int64_t>(grp * p.cg + cl) * p.hw] = acc[i][j];
    }
}

// Sum of squares of v into *sumSq (double, zeroed beforehand).
__global__ void __launch_bounds__(kThreads) sumSquaresKernel(const float* __restrict__ v, int64_t n, double* sumSq) {
    double s = 0.0;
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const double d = v[i];
        s += d * d;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    __shared__ double part[kThreads / 32];
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = s;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0.0;
        for (int i = 0; i < kThreads / 32; ++i) t += part[i];
        atomicAdd(sumSq, t);
    }
}

// v *= eta * sqrt(n) / max(||v||_2, 1e-12)   (AdderNet's adaptive gradient scale)
__global__ void __launch_bounds__(kThreads) adaptiveScaleKernel(float* __restrict__ v, int64_t n, float eta,
                                                                const double* __restrict__ sumSq) {
    const double norm = fmax(sqrt(*sumSq), 1e-12);
    const float f = static_cast<float>(static_cast<double>(eta) * sqrt(static_cast<double>(n)) / norm);
    for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        v[i] *= f;
}

int smCount() {
    int dev = 0, sms = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms <= 0) {
        cudaGetLastError();  // clear; fall back to a typical count
        sms = 80;
    }
    return sms;
}

template <int BM>
void launchGradW(const ConvParams& p, const float* x, const float* w, const float* gA, float* gW,
                 cudaStream_t stream) {
    constexpr int BKC = 4096 / BM;
    const int tilesXY = ceilDiv(p.kRed, BKC) * ceilDiv(p.mg, BM);
    const int64_t tiles = static_cast<int64_t>(tilesXY) * p.groups;
    // Split the pixel reduction so that about 4 blocks per SM exist, each with >= 256 pixels.
    const int64_t want = 4LL * smCount();
    int64_t splits = (want + tiles - 1) / tiles;
    splits = std::min<int64_t>(splits, std::max(1, p.pixOut / 256));
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, 65535 / p.groups));
    int pixPerSplit = ceilDiv(p.pixOut, static_cast<int>(splits));
    pixPerSplit = ceilDiv(pixPerSplit, 16) * 16;
    splits = ceilDiv(p.pixOut, pixPerSplit);
    const dim3 grid(ceilDiv(p.kRed, BKC), ceilDiv(p.mg, BM), static_cast<unsigned>(p.groups * splits));
    adderGradWKernel<BM><<<grid, kThreads, 0, stream>>>(p, x, w, gA, gW, pixPerSplit);
}

template <int BC>
void launchGradX(const ConvParams& p, const float* x, const float* w, const float* gA, float* gX,
                 cudaStream_t stream) {
    constexpr int BN = 4096 / BC;
    const dim3 grid(ceilDiv(p.pixIn, BN), ceilDiv(p.cg, BC), p.groups);
    adderGradXKernel<BC><<<grid, kThreads, 0, stream>>>(p, x, w, gA, gX);
}

}  // namespace
}  // namespace detail

Status adderConvForward(const ConvGeometry& g, DType dtype, const void* x, const float* w, const Epilogue& ep,
                        void* y, void* workspace, size_t workspaceSize, cudaStream_t stream) {
    (void)workspace;
    (void)workspaceSize;
    const Status s = detail::checkGeometry(g);
    if (s != Status::kSuccess) return s;
    if (!x || !w || !y || !ep.scale || !ep.shift) return Status::kInvalidArgument;
    const detail::ConvParams p = detail::makeParams(g);
    if (dtype == DType::kFloat32)
        return detail::launchFloatConv<detail::FloatOp::kAdder, float, float>(
            p, static_cast<const float*>(x), w, ep, static_cast<float*>(y), stream);
    if (dtype == DType::kFloat16)  // FP16 activations, float32 weights and arithmetic
        return detail::launchFloatConv<detail::FloatOp::kAdder, __half, float>(
            p, static_cast<const __half*>(x), w, ep, static_cast<__half*>(y), stream);
    return Status::kUnsupported;
}

Status adderConvBackward(const ConvGeometry& g, const float* x, const float* w, const float* gradA, float* gradX,
                         float* gradW, float eta, void* workspace, size_t workspaceSize, cudaStream_t stream) {
    const Status s = detail::checkGeometry(g);
    if (s != Status::kSuccess) return s;
    if (!x || !w || !gradA) return Status::kInvalidArgument;
    const bool scaleW = gradW != nullptr && eta > 0.0f;
    if (scaleW && (workspace == nullptr || workspaceSize < adderConvBackwardWorkspaceSize(g)))
        return Status::kInvalidArgument;
    const detail::ConvParams p = detail::makeParams(g);
    if (detail::ceilDiv(p.mg, 16) > 65535 || detail::ceilDiv(p.cg, 16) > 65535) return Status::kUnsupported;

    if (gradX) {
        switch (detail::chooseTileM(p.cg)) {
            case 16: detail::launchGradX<16>(p, x, w, gradA, gradX, stream); break;
            case 32: detail::launchGradX<32>(p, x, w, gradA, gradX, stream); break;
            default: detail::launchGradX<64>(p, x, w, gradA, gradX, stream); break;
        }
        if (detail::launchStatus() != Status::kSuccess) return Status::kCudaError;
    }
    if (gradW) {
        const int64_t numel = static_cast<int64_t>(p.m) * p.kRed;
        if (cudaMemsetAsync(gradW, 0, numel * sizeof(float), stream) != cudaSuccess) return Status::kCudaError;
        switch (detail::chooseTileM(p.mg)) {
            case 16: detail::launchGradW<16>(p, x, w, gradA, gradW, stream); break;
            case 32: detail::launchGradW<32>(p, x, w, gradA, gradW, stream); break;
            default: detail::launchGradW<64>(p, x, w, gradA, gradW, stream); break;
        }
        if (detail::launchStatus() != Status::kSuccess) return Status::kCudaError;
        if (scaleW) {
            double* sumSq = static_cast<double*>(workspace);
            if (cudaMemsetAsync(sumSq, 0, sizeof(double), stream) != cudaSuccess) return Status::kCudaError;
            const int blocks = static_cast<int>(std::min<int64_t>(1024, (numel + detail::kThreads - 1) / detail::kThreads));
            detail::sumSquaresKernel<<<blocks, detail::kThreads, 0, stream>>>(gradW, numel, sumSq);
            detail::adaptiveScaleKernel<<<blocks, detail::kThreads, 0, stream>>>(gradW, numel, eta, sumSq);
            if (detail::launchStatus() != Status::kSuccess) return Status::kCudaError;
        }
    }
    return Status::kSuccess;
}

}  // namespace cmc
