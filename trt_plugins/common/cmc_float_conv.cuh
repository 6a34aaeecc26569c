// The tiled implicit-GEMM kernel behind AdderConv's forward and BinaryConv's float-input
// (binarize_input = 0) forward: Y[n, m, i, j] = act(scale[m] * A + shift[m]) with
//     A = -sum_k |Xcol[k, pix] - Wm[m, k]|    (FloatOp::kAdder)
//     A =  sum_k  Xcol[k, pix] * Wm[m, k]     (FloatOp::kMul)
// over k = (c * kh + p) * kw + q of the zero-padded input (padded taps read x = 0, so an adder tap
// contributes |w| and a multiply tap 0, as both contracts say). Wm is the weight matrix
// [m, cPerGroup * kh * kw], i.e. AdderConv's W as it is.
//
// Tiling: a 256-thread block computes BM output channels x BN = 4096 / BM output pixels (pixels run
// over n, i, j together), 4 x 4 per thread, stepping through k in tiles of 16 held in shared memory;
// the next tile's global loads are issued before the current tile is consumed (register prefetch).
// No im2col buffer is ever built.
//
// Precision: X and Y are in T (float or __half), the weights in TW (AdderConv: always float; the
// BinaryConv float-input path: its expanded +-1 matrix in T). Every element is converted to float as it
// is loaded (exact), so the tiles, |x - w| / x * w, the K-long sum and the epilogue are float32 whatever
// T is, and Y is rounded to T once. For AdderConv this is the contract's FP16 rule: half partial sums or
// half weights cost up to ~20% of max|y| on trained AdderNets (raw sums in the tens of thousands, a
// folded BatchNorm subtracting a mean of hundreds of standard deviations).
#pragma once

#include "cmc_cuda_common.cuh"

namespace cmc {
namespace detail {

enum class FloatOp { kAdder, kMul };

constexpr int kConvThreads = 256;
constexpr int kConvBK = 16;

template <int BM, FloatOp OP, typename T, typename TW>
__global__ void __launch_bounds__(kConvThreads)
floatConvKernel(ConvParams p, const T* __restrict__ x, const TW* __restrict__ wm,
                const float* __restrict__ scale, const float* __restrict__ shift, bool relu,
                T* __restrict__ y) {
    constexpr int BN = 4096 / BM;
    constexpr int BK = kConvBK;
    constexpr int TXN = BN / 4;  // threads along pixels
    constexpr int TYM = BM / 4;  // threads along channels
    static_assert(TXN * TYM == kConvThreads, "4x4 outputs per thread");
    static_assert(kConvThreads % BN == 0, "X loader: whole rows per thread group");
    constexpr int XR = BK * BN / kConvThreads;  // X elements loaded per thread and tile
    constexpr int WR = BK * BM / kConvThreads;  // W elements loaded per thread and tile
    static_assert(XR >= 1 && WR >= 1 && BK % WR == 0, "loader shape");

    __shared__ __align__(16) float xs[BK][BN];
    __shared__ __align__(16) float ws[BK][BM];

    const int tid = threadIdx.x;
    const int grp = blockIdx.z;
    const int m0 = blockIdx.y * BM;  // channel offset inside the group
    const int pix0 = blockIdx.x * BN;

    // ---- X loader: one pixel column, XR consecutive k rows ----
    const int xlJ = tid % BN;
    const int xlK = (tid / BN) * XR;
    const int pixL = pix0 + xlJ;
    const bool pixOk = pixL < p.pixOut;
    int ih0 = 0, iw0 = 0;
    const T* xg = x;
    if (pixOk) {
        const int nn = pixL / p.howo;
        const int r = pixL - nn * p.howo;
        const int oh = r / p.wo;
        const int ow = r - oh * p.wo;
        ih0 = oh * p.sh - p.pt;
        iw0 = ow * p.sw - p.pl;
        xg = x + (static_cast<int64_t>(nn) * p.c + static_cast<int64_t>(grp) * p.cg) * p.hw;
    }
    // k = (c * kh + pr) * kw + q as digits (c, pr, q)
    math::Radix3 cursor = math::radix3(xlK, p.kh, p.kw);
    const math::Radix3 tileStep = math::radix3(BK, p.kh, p.kw);

    // ---- W loader: one channel row, WR consecutive k ----
    const int wlM = (tid * WR) / BK;
    const int wlK = (tid * WR) % BK;
    const bool mOk = m0 + wlM < p.mg;
    const TW* wg = wm + static_cast<int64_t>(grp * p.mg + (mOk ? m0 + wlM : 0)) * p.kRed;

    float xr[XR];
    float wr[WR];
    auto loadTile = [&](int k0, math::Radix3 c) {
#pragma unroll
        for (int r = 0; r < XR; ++r) {
            const int k = k0 + xlK + r;
            float v = 0.0f;
            if (pixOk && k < p.kRed) {
                const int ih = ih0 + c.d1 * p.dh;
                const int iw = iw0 + c.d2 * p.dw;
                if (static_cast<unsigned>(ih) < static_cast<unsigned>(p.h) &&
                    static_cast<unsigned>(iw) < static_cast<unsigned>(p.w))
                    v = toFloat(xg[c.d0 * p.hw + ih * p.w + iw]);
            }
            xr[r] = v;
            math::radix3Inc(c, p.kh, p.kw);
        }
#pragma unroll
        for (int r = 0; r < WR; ++r) {
            const int k = k0 + wlK + r;
            wr[r] = (mOk && k < p.kRed) ? toFloat(wg[k]) : 0.0f;
        }
    };

    const int tx = tid % TXN;
    const int ty = tid / TXN;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

    loadTile(0, cursor);
    for (int k0 = 0; k0 < p.kRed; k0 += BK) {
#pragma unroll
        for (int r = 0; r < XR; ++r) xs[xlK + r][xlJ] = xr[r];
#pragma unroll
        for (int r = 0; r < WR; ++r) ws[wlK + r][wlM] = wr[r];
        __syncthreads();
        if (k0 + BK < p.kRed) {
            math::radix3Add(cursor, tileStep, p.kh, p.kw);
            loadTile(k0 + BK, cursor);
        }
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) a[i] = ws[kk][ty + TYM * i];
#pragma unroll
            for (int jj = 0; jj < 2; ++jj) {
                const float2 v = *reinterpret_cast<const float2*>(&xs[kk][2 * tx + (BN / 2) * jj]);
                b[2 * jj] = v.x;
                b[2 * jj + 1] = v.y;
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    if constexpr (OP == FloatOp::kAdder)
                        acc[i][j] -= fabsf(b[j] - a[i]);  // FADD + FADD with a -|.| operand
                    else
                        acc[i][j] = fmaf(b[j], a[i], acc[i][j]);
                }
        }
        __syncthreads();
    }

    // ---- epilogue ----
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int ml = m0 + ty + TYM * i;
        if (ml >= p.mg) continue;
        const int mAbs = grp * p.mg + ml;
        const float sc = scale[mAbs], sf = shift[mAbs];
#pragma unroll
        for (int jj = 0; jj < 2; ++jj)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int pix = pix0 + 2 * tx + (BN / 2) * jj + e;
                if (pix >= p.pixOut) continue;
                const int nn = pix / p.howo;
                const int r = pix - nn * p.howo;
                const float v = epilogue(acc[i][2 * jj + e], sc, sf, relu);
                // BinaryConv (kMul) rounds by its float16 rule; AdderConv rounds to nearest
                y[(static_cast<int64_t>(nn) * p.m + mAbs) * p.howo + r] =
                    OP == FloatOp::kMul ? binaryOut<T>(v) : fromFloat<T>(v);
            }
    }
}

// Channel tile for a group of `mg` output channels (BN = 4096 / BM pixels).
inline int chooseTileM(int mg) { return mg <= 16 ? 16 : (mg <= 32 ? 32 : 64); }

template <FloatOp OP, typename T, typename TW>
Status launchFloatConv(const ConvParams& p, const T* x, const TW* wm, const Epilogue& ep, T* y,
                       cudaStream_t stream) {
    const int bm = chooseTileM(p.mg);
    const int bn = 4096 / bm;
    const dim3 grid(ceilDiv(p.pixOut, bn), ceilDiv(p.mg, bm), p.groups);
    if (grid.y > 65535u || grid.z > 65535u) return Status::kUnsupported;
    const dim3 block(kConvThreads);
    switch (bm) {
        case 16: floatConvKernel<16, OP, T, TW><<<grid, block, 0, stream>>>(p, x, wm, ep.scale, ep.shift, ep.relu, y); break;
        case 32: floatConvKernel<32, OP, T, TW><<<grid, block, 0, stream>>>(p, x, wm, ep.scale, ep.shift, ep.relu, y); break;
        default: floatConvKernel<64, OP, T, TW><<<grid, block, 0, stream>>>(p, x, wm, ep.scale, ep.shift, ep.relu, y); break;
    }
    return launchStatus();
}

}  // namespace detail
}  // namespace cmc
