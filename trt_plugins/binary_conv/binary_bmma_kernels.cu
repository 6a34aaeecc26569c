// BinaryConv on bit tensor cores (sm_80+): mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc
// as an implicit GEMM, M = output channels, N = output pixels (n, oh, ow), K = (tap, 128-bit chunk)
// items of the packed input, paired two per 256-bit k-step. Hopper has no XOR form of the b1 MMA,
// so the exact +-1 dot product is rebuilt from AND-popcounts (cmc_binary_layout.h, top):
//     B = 4 * popc(a & w) - 2 * P_a(pixel) - 2 * P_b(filter, valid-tap rectangle) + Cg * nValid.
// Every index function (k-step walk, B gather, A fragment order, column terms, epilogue, packed
// output bits) is the __host__ __device__ code of cmc_binary_layout.h that the CPU model
// (trt_plugins/tests/bmma_model.cpp) runs lane by lane against a +-1 convolution.
//
// Also here: packing / unpacking of activations, the weight preparation, and the P_a pre-pass.
//
// The kernel keeps no shared memory: each warp loads its A fragments (one 16-byte load per 16-row
// tile and k-step, in fragment order, coalesced) and its B words (one 32-bit load per 8-column tile,
// half and lane, gathered from the packed NHWC input through L1) straight into registers, with the
// next k-step's loads issued before the current MMAs. Eight tile shapes; binaryBmmaTileRule
// (cmc_binary_host.cpp) picks one from an H200 sweep (trt_plugins/KERNELS.md, "Measured").
#include <algorithm>
#include <atomic>
#include <cstdint>

#include "binary_conv_internal.cuh"
#include "cmc_cuda_common.cuh"

namespace cmc {
namespace detail {
namespace {

constexpr int kPackThreads = 256;

int packGrid(int64_t total) {
    const int64_t blocks = (total + kPackThreads - 1) / kPackThreads;
    return static_cast<int>(blocks < (1 << 16) ? (blocks > 0 ? blocks : 1) : (1 << 16));
}

// x NCHW -> packed [n, h, w, wpp]: one thread per output word, hw fastest so that the 32 channel
// reads of a warp are coalesced.
template <typename T>
__global__ void __launch_bounds__(kPackThreads)
packActivationsKernel(int32_t n, int32_t c, int32_t hw, int32_t wpp, const T* __restrict__ x, uint32_t* __restrict__ xp) {
    const int64_t total = static_cast<int64_t>(n) * wpp * hw;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int32_t hwI = static_cast<int32_t>(idx % hw);
        const int64_t rest = idx / hw;
        const int32_t k = static_cast<int32_t>(rest % wpp);
        const int32_t nn = static_cast<int32_t>(rest / wpp);
        const int32_t cnt = min(32, max(0, c - 32 * k));
        const T* src = x + (static_cast<int64_t>(nn) * c + 32 * k) * hw + hwI;
        uint32_t word = 0;
        if (cnt == 32) {  // whole words: 32 independent loads in flight (the H200 profile: 1 TB/s before)
#pragma unroll
            for (int32_t b = 0; b < 32; ++b)
                word |= (toFloat<T>(src[static_cast<int64_t>(b) * hw]) >= 0.0f ? 1u : 0u) << b;
        } else {
            for (int32_t b = 0; b < cnt; ++b)
                if (toFloat<T>(src[static_cast<int64_t>(b) * hw]) >= 0.0f) word |= 1u << b;
        }
        xp[(static_cast<int64_t>(nn) * hw + hwI) * wpp + k] = word;
    }
}

// packed -> NCHW +-1, one thread per element (hw fastest: coalesced writes).
template <typename T>
__global__ void __launch_bounds__(kPackThreads)
unpackActivationsKernel(int32_t n, int32_t c, int32_t hw, int32_t wpp, const uint32_t* __restrict__ xp, T* __restrict__ x) {
    const int64_t total = static_cast<int64_t>(n) * c * hw;
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int32_t hwI = static_cast<int32_t>(idx % hw);
        const int64_t rest = idx / hw;
        const int32_t ch = static_cast<int32_t>(rest % c);
        const int32_t nn = static_cast<int32_t>(rest / c);
        const uint32_t word = xp[(static_cast<int64_t>(nn) * hw + hwI) * wpp + (ch >> 5)];
        x[idx] = fromFloat<T>(((word >> (ch & 31)) & 1u) ? 1.0f : -1.0f);
    }
}

// The prepared weights: contract copy (tail bits masked), A fragments, rectangle popcount table.
__global__ void __launch_bounds__(kPackThreads)
prepareWeightsKernel(bits::PreparedLayout L, bits::BmmaPlan pl, int32_t m, int32_t cg, int32_t kh, int32_t kw,
                     const uint32_t* __restrict__ w, unsigned char* __restrict__ out) {
    const int32_t nw = (cg + 31) / 32;
    const int64_t total = L.contractWords + L.fragWords + L.tableEntries;
    uint32_t* contract = reinterpret_cast<uint32_t*>(out + L.contractOff);
    uint32_t* frag = reinterpret_cast<uint32_t*>(out + L.fragOff);
    int32_t* table = reinterpret_cast<int32_t*>(out + L.tableOff);
    for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
         idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        if (idx < L.contractWords) {
            contract[idx] = w[idx] & bits::channelMask(cg, static_cast<int32_t>(idx % nw));
        } else if (idx < L.contractWords + L.fragWords) {
            const int64_t f = idx - L.contractWords;  // = fragWordIndex(mt, s, lane, r)
            const int32_t r = static_cast<int32_t>(f & 3);
            const int32_t lane = static_cast<int32_t>((f >> 2) & 31);
            const int64_t ms = f >> 7;
            const int32_t s = static_cast<int32_t>(ms % pl.kSteps);
            const int32_t mt = static_cast<int32_t>(ms / pl.kSteps);
            frag[f] = bits::bmmaPreparedAWord(pl, m, cg, w, mt, s, lane, r);
        } else {
            const int64_t t = idx - L.contractWords - L.fragWords;  // = rectTableIndex(row, rp, rq)
            const int32_t rq = static_cast<int32_t>(t % pl.rangesW);
            const int64_t rest = t / pl.rangesW;
            const int32_t rp = static_cast<int32_t>(rest % pl.rangesH);
            const int32_t row = static_cast<int32_t>(rest / pl.rangesH);
            table[t] = bits::bmmaRectPopcount(pl, cg, kh, kw, w, row, rp, rq);
        }
    }
}

// P_a per output pixel (the popcount of the real channel bits over its valid taps). 128-thread
// blocks and 128-bit loads (a packed pixel is whole 16-byte chunks): the H200 profile of the scalar
// version (256-thread blocks, one word per load) showed 49 blocks on 132 SMs taking 8 us on the
// BNN workhorse layer, a sixth of the whole BMMA forward (this version: 6.7 us — still latency-bound,
// one thread per output pixel; folding P_a into the BMMA kernel is the next step).
constexpr int kPopThreads = 128;

// bits::bmmaPixelPopcount with one 16-byte load per 128-bit chunk (same sum, same masking).
__device__ __forceinline__ int32_t pixelPopcountChunks(const bits::BmmaDims& d, const uint4* x, int32_t pix) {
    const bits::BmmaColumn col = bits::bmmaColumn(d, pix);
    const int32_t cpt = bits::chunksPerPixel(d.c);
    int32_t sum = 0;
    for (int32_t p = 0; p < d.kh; ++p)
        for (int32_t q = 0; q < d.kw; ++q) {
            if (!((col.tapMask >> (p * d.kw + q)) & 1u)) continue;
            const uint32_t base = (col.base + bits::bmmaItemOffset(d, p, q, 0)) / bits::kChunkWords;
            for (int32_t ch = 0; ch < cpt; ++ch) {
                const uint4 v = __ldg(x + base + static_cast<uint32_t>(ch));
                const int32_t k = ch * bits::kChunkWords;
                sum += __popc(v.x & bits::channelMask(d.c, k)) + __popc(v.y & bits::channelMask(d.c, k + 1)) +
                       __popc(v.z & bits::channelMask(d.c, k + 2)) + __popc(v.w & bits::channelMask(d.c, k + 3));
            }
        }
    return sum;
}
// VEC: the packed input is 16-byte aligned (always in the workspace; a caller's packed tensor need
// only be 4-byte aligned, and then the word-by-word version runs).
template <bool VEC>
__global__ void __launch_bounds__(kPopThreads)
pixelPopcountKernel(bits::BmmaDims d, const uint32_t* __restrict__ xp, int32_t* __restrict__ popA) {
    for (int32_t pix = blockIdx.x * blockDim.x + threadIdx.x; pix < d.pixOut; pix += gridDim.x * blockDim.x)
        popA[pix] = VEC ? pixelPopcountChunks(d, reinterpret_cast<const uint4*>(xp), pix)
                        : bits::bmmaPixelPopcount(d, xp, pix);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
__device__ __forceinline__ void mmaAndPopc(int32_t (&c)[4], const uint4& a, const uint32_t (&b)[2]) {
    asm("mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]));
}
#endif

// Two adjacent outputs in one store (the address is aligned to twice the element size).
__device__ __forceinline__ void storePair(float* y, float a, float b) { *reinterpret_cast<float2*>(y) = make_float2(a, b); }
__device__ __forceinline__ void storePair(__half* y, __half a, __half b) { *reinterpret_cast<__half2*>(y) = __halves2half2(a, b); }

// One warp computes WM 16-row tiles x WN 8-column tiles; a block holds WARPS_M x WARPS_N warps.
// WM is even, so a warp's rows are whole 32-channel words of a packed output.
// FUSED: no P_a pre-pass (popA unused) — each lane adds up the real channel bits of the B words it
// loads for the MMAs (bits::bmmaPaPart), and the four lanes of a column reduce them by shuffle after
// the k-loop; the column set-up and terms use the division-free forms (fast divmod, closed-form tap
// mask). The CPU model runs the same functions (bmma_model.cpp, fused = true).
// Launch bounds of the fused kernel: at least 384 / 512 / 1024 resident threads per SM for a warp
// tile of 16 / 8 / 4 MMA tiles, i.e. up to 170 / 128 / 64 registers per thread (the 2x2 tile fits in
// 64, as its pre-pass twin does in 60, and keeps 32 warps per SM). Left to itself ptxas capped the
// fused 4x2 and 4x4 tiles at 96 / 128 registers on sm_80-87 and spilled (the build test rejects
// spills). 0 = no minimum: the launch bounds leave the pre-pass kernel's SASS as it was.
template <int WM, int WN, int WARPS_M, int WARPS_N>
constexpr int fusedMinBlocks() {
    constexpr int threads = 32 * WARPS_M * WARPS_N, want = WM * WN >= 16 ? 384 : (WM * WN >= 8 ? 512 : 1024);
    return want / threads > 0 ? want / threads : 1;
}
template <int WM, int WN, int WARPS_M, int WARPS_N, typename T, bool PACKED_OUT, bool FUSED>
__global__ void __launch_bounds__(32 * WARPS_M * WARPS_N, FUSED ? fusedMinBlocks<WM, WN, WARPS_M, WARPS_N>() : 0)
binaryBmmaConvKernel(bits::BmmaDims d, bits::BmmaPlan pl, const uint32_t* __restrict__ x,
                     const uint4* __restrict__ frag, const int32_t* __restrict__ table,
                     const int32_t* __restrict__ popA, const float* __restrict__ scale,
                     const float* __restrict__ shift, bool relu, void* __restrict__ yOut) {
    static_assert(WM % 2 == 0, "warp tiles must cover whole 32-row words");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int mt0 = (blockIdx.y * WARPS_M + warp % WARPS_M) * WM;          // first 16-row tile
    const int col0 = (blockIdx.x * WARPS_N + warp / WARPS_M) * (WN * 8);   // first pixel
    if (mt0 >= pl.mTiles || col0 >= d.pixOut) return;  // warp-uniform; the kernel has no block barrier

    bits::BmmaColumn cols[WN];
#pragma unroll
    for (int nt = 0; nt < WN; ++nt)
        cols[nt] = FUSED ? bits::bmmaColumnFast(d, col0 + nt * 8 + (lane >> 2)) : bits::bmmaColumn(d, col0 + nt * 8 + (lane >> 2));

    const uint4* aBase = frag + static_cast<int64_t>(mt0) * pl.kSteps * 32 + lane;
    uint4 a[WM], an[WM];
    uint32_t b[WN][2], bn[WN][2];
    auto loadA = [&](int s, uint4 (&dst)[WM]) {
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
            dst[mt] = (mt0 + mt < pl.mTiles) ? bits::loadRO(aBase + (static_cast<int64_t>(mt) * pl.kSteps + s) * 32)
                                             : make_uint4(0u, 0u, 0u, 0u);
    };
    auto loadB = [&](const bits::BmmaStepIter& it, uint32_t (&dst)[WN][2]) {
        const uint32_t off0 = bits::bmmaItemOffset(d, it.p[0], it.q[0], it.item[0].chunk);
        const uint32_t off1 = bits::bmmaItemOffset(d, it.p[1], it.q[1], it.item[1].chunk);
        if constexpr (FUSED) {  // the lane's word folded into the offset once per step, not per column
            const uint32_t lw0 = off0 + static_cast<uint32_t>(lane & 3), lw1 = off1 + static_cast<uint32_t>(lane & 3);
#pragma unroll
            for (int nt = 0; nt < WN; ++nt) {
                dst[nt][0] = bits::bmmaBWord(x, cols[nt], it.item[0], lw0, 0);
                dst[nt][1] = bits::bmmaBWord(x, cols[nt], it.item[1], lw1, 0);
            }
        } else {
#pragma unroll
            for (int nt = 0; nt < WN; ++nt) {
                dst[nt][0] = bits::bmmaBWord(x, cols[nt], it.item[0], off0, lane);
                dst[nt][1] = bits::bmmaBWord(x, cols[nt], it.item[1], off1, lane);
            }
        }
    };

    int32_t acc[WM][WN][4];
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
        for (int nt = 0; nt < WN; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0;

    int32_t pa[WN];  // FUSED: this lane's share of its column's P_a
#pragma unroll
    for (int nt = 0; nt < WN; ++nt) pa[nt] = 0;

    auto mmaStep = [&]() {  // this k-step's WM x WN MMAs
#pragma unroll
        for (int mt = 0; mt < WM; ++mt)
#pragma unroll
            for (int nt = 0; nt < WN; ++nt) mmaAndPopc(acc[mt][nt], a[mt], b[nt]);
    };
    auto takeNext = [&]() {  // the next k-step's operands become the current ones
#pragma unroll
        for (int mt = 0; mt < WM; ++mt) a[mt] = an[mt];
#pragma unroll
        for (int nt = 0; nt < WN; ++nt) {
            b[nt][0] = bn[nt][0];
            b[nt][1] = bn[nt][1];
        }
    };

    bits::BmmaStepIter it;
    it.start(pl, d.kw);
    loadA(0, a);
    loadB(it, b);
    if constexpr (!FUSED) {
        for (int s = 0; s < pl.kSteps; ++s) {
            const bool more = s + 1 < pl.kSteps;
            if (more) {  // next k-step's loads in flight while this one's MMAs run
                it.next(pl, d.kw);
                loadA(s + 1, an);
                loadB(it, bn);
            }
            mmaStep();
            if (more) takeNext();
        }
    } else {
        // The loads of the next step are unconditional (the last step reloads its own, cached operands)
        // and so are the register copies: the loop body has no predicated selects, and unrolling by
        // two lets the compiler rename instead of copy (sm_90 SASS: about 250 instead of 301 instructions
        // per k-step for the 4x4 warp tile; the 4x2 and 2x2 tiles spill on sm_87 when unrolled).
        const uint32_t lastMask = bits::bmmaPaLastMask(d.c, lane);
        constexpr int kUnroll = WN >= 4 ? 2 : 1;
#pragma unroll kUnroll
        for (int s = 0; s < pl.kSteps; ++s) {
            const bool more = s + 1 < pl.kSteps;
            const int32_t chunk0 = it.item[0].chunk, chunk1 = it.item[1].chunk;  // the step b holds
            if (more) it.next(pl, d.kw);
            loadA(more ? s + 1 : s, an);
            loadB(it, bn);
            mmaStep();
#pragma unroll
            for (int nt = 0; nt < WN; ++nt)
                pa[nt] += bits::bmmaPaPart(b[nt][0], chunk0, pl.cpt, lastMask) +
                          bits::bmmaPaPart(b[nt][1], chunk1, pl.cpt, lastMask);
            takeNext();
        }
    }

    if constexpr (FUSED) {  // the column's four lanes (threadID_in_group) hold its P_a in parts
#pragma unroll
        for (int nt = 0; nt < WN; ++nt) {
            pa[nt] += __shfl_xor_sync(0xffffffffu, pa[nt], 1);
            pa[nt] += __shfl_xor_sync(0xffffffffu, pa[nt], 2);
        }
    }

    // ---- epilogue: B from the AND-popcounts, then act(scale * B + shift) ----
    const int32_t tableRow = pl.rangesH * pl.rangesW;
    // the lane's 2*WM rows (C registers i and i+1 share a row): scale / shift loaded once, not per column
    float sc[WM][2], sf[WM][2];
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int32_t row = (mt0 + mt) * 16 + bits::fragCRow(lane, 2 * hh);
            const bool ok = row < d.m;
            sc[mt][hh] = ok ? bits::loadRO(scale + row) : 0.0f;
            sf[mt][hh] = ok ? bits::loadRO(shift + row) : 0.0f;
        }
    // FUSED: P_b of the whole window, once per row — a column with every tap valid (e.g. 73 % of a
    // 14x14 3x3 pad-1 layer, all of a 1x1 pad-0 one) takes it from a register instead of gathering
    // table[row][rect] per output
    // FUSED also indexes Y and the table in int32 (both hold fewer than 2^31 elements: checked
    // limits): the H200-measured epilogue spent about 70 SASS instructions per pair of outputs, much
    // of it 64-bit index arithmetic. (Keeping row * howo in registers made the 4x2 tile spill.)
    const int32_t fullRect = bits::bmmaFullRect(pl, d.kh, d.kw);
    int32_t pbFull[WM][2];
#pragma unroll
    for (int mt = 0; mt < WM; ++mt)
#pragma unroll
        for (int hh = 0; hh < 2; ++hh) {
            const int32_t row = (mt0 + mt) * 16 + bits::fragCRow(lane, 2 * hh);
            pbFull[mt][hh] = (FUSED && row < d.m) ? bits::loadRO(table + (row * tableRow + fullRect)) : 0;
        }
    // P_b of (row, column rectangle rect); rect < 0: a column beyond the output
    auto popBOf = [&](int mt, int hh, int32_t row, int32_t rect) -> int32_t {
        if constexpr (FUSED) {
            if (rect == fullRect) return pbFull[mt][hh];
            return rect >= 0 ? bits::loadRO(table + (row * tableRow + rect)) : 0;  // row < m here
        }
        return rect >= 0 ? bits::loadRO(table + static_cast<int64_t>(row) * tableRow + rect) : 0;
    };
    // Column terms: each lane computes those of its own B column (groupID) once; the C fragment's
    // columns (2 threadID_in_group + e) fetch them from lane 4 * column by shuffle. (Each lane used to
    // compute the terms of both its C columns itself: twice the divisions.)
    int32_t myRect[WN], myTerm[WN], myY[WN];
#pragma unroll
    for (int nt = 0; nt < WN; ++nt) {
        const int32_t pix = col0 + nt * 8 + (lane >> 2);
        myRect[nt] = -1;  // -1: beyond the output
        myTerm[nt] = myY[nt] = 0;
        if (pix < d.pixOut) {
            const bits::BmmaColumnTerms t = FUSED ? bits::bmmaColumnTermsFast(d, pl, pix) : bits::bmmaColumnTerms(d, pl, pix);
            myRect[nt] = t.rect;
            myTerm[nt] = bits::bmmaColumnTerm(d.c, t.nValid, FUSED ? pa[nt] : bits::loadRO(popA + pix));
            myY[nt] = t.nImg * d.m * d.howo + t.r;  // < n m ho wo < 2^31 (checked limits)
        }
    }
    if constexpr (!PACKED_OUT) {
        // C registers i = 2 hh and 2 hh + 1 are adjacent pixels of one row: one 2-element store where
        // both exist, lie in the same image and the address is aligned (else two plain stores)
        const bool yPairAligned = reinterpret_cast<uintptr_t>(yOut) % (2 * sizeof(T)) == 0;
#pragma unroll
        for (int nt = 0; nt < WN; ++nt) {
            int32_t rect[2], colTerm[2], yCol[2];
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int src = 4 * bits::fragCCol(lane, e);
                rect[e] = __shfl_sync(0xffffffffu, myRect[nt], src);
                colTerm[e] = __shfl_sync(0xffffffffu, myTerm[nt], src);
                yCol[e] = __shfl_sync(0xffffffffu, myY[nt], src);
            }
            const bool pair = rect[0] >= 0 && rect[1] >= 0 && yCol[1] == yCol[0] + 1;
#pragma unroll
            for (int mt = 0; mt < WM; ++mt)
#pragma unroll
                for (int hh = 0; hh < 2; ++hh) {
                    const int32_t row = (mt0 + mt) * 16 + bits::fragCRow(lane, 2 * hh);
                    if (row >= d.m) continue;
                    T v[2];
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int32_t popB = popBOf(mt, hh, row, rect[e]);
                        const int32_t dot = bits::bmmaDot(acc[mt][nt][2 * hh + e], popB, colTerm[e]);
                        v[e] = binaryOut<T>(bits::bmmaEpilogue(dot, sc[mt][hh], sf[mt][hh], relu));
                    }
                    if constexpr (FUSED) {  // int32 offsets; the pair store needs an even offset on an aligned Y
                        T* const yb = static_cast<T*>(yOut);
                        const int32_t rowOff = row * d.howo;  // row < m here
                        const int32_t off0 = rowOff + yCol[0];
                        if (pair && yPairAligned && (off0 & 1) == 0) {
                            storePair(yb + off0, v[0], v[1]);
                        } else {
                            if (rect[0] >= 0) yb[off0] = v[0];
                            if (rect[1] >= 0) yb[rowOff + yCol[1]] = v[1];
                        }
                    } else {
                        T* y = static_cast<T*>(yOut) + static_cast<int64_t>(row) * d.howo + yCol[0];
                        if (pair && reinterpret_cast<uintptr_t>(y) % (2 * sizeof(T)) == 0) {
                            storePair(y, v[0], v[1]);
                        } else {
                            if (rect[0] >= 0) *y = v[0];
                            if (rect[1] >= 0) static_cast<T*>(yOut)[static_cast<int64_t>(row) * d.howo + yCol[1]] = v[1];
                        }
                    }
                }
        }
    } else {
#pragma unroll
        for (int nt = 0; nt < WN; ++nt)
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int32_t pix = col0 + nt * 8 + bits::fragCCol(lane, e);
                const int src = 4 * bits::fragCCol(lane, e);
                const int32_t rect = __shfl_sync(0xffffffffu, myRect[nt], src);
                const int32_t colTerm = __shfl_sync(0xffffffffu, myTerm[nt], src);
                const bool colOk = rect >= 0;
                {
                    uint32_t* y = static_cast<uint32_t*>(yOut);
                    const int32_t realWords = (d.m + 31) / 32;
                    const int32_t w0 = mt0 / 2;
#pragma unroll
                    for (int wi = 0; wi < WM / 2; ++wi) {
                        uint32_t part = 0;
#pragma unroll
                        for (int q = 0; q < 2; ++q)
#pragma unroll
                            for (int hh = 0; hh < 2; ++hh) {
                                const int mt = 2 * wi + q, i = 2 * hh + e;
                                const int32_t row = (mt0 + mt) * 16 + bits::fragCRow(lane, i);
                                if (!colOk || row >= d.m) continue;
                                const int32_t popB = popBOf(mt, hh, row, rect);
                                const int32_t dot = bits::bmmaDot(acc[mt][nt][i], popB, colTerm);
                                const float v = bits::bmmaEpilogue(dot, sc[mt][hh], sf[mt][hh], relu);
                                // the sign of the value as the unpacked output would hold it (rounded to T)
                                // the bit of v rounded to T: by the float16 rounding rule (binaryOut) that is v's own
                                if (v >= 0.0f) part |= 1u << bits::packedOutBit(mt0 + mt, lane, i);
                            }
                        // OR over the 8 lanes sharing threadID_in_group (lane bits 2..4): every lane takes part
                        part |= __shfl_xor_sync(0xffffffffu, part, 4);
                        part |= __shfl_xor_sync(0xffffffffu, part, 8);
                        part |= __shfl_xor_sync(0xffffffffu, part, 16);
                        const int32_t word = w0 + wi;
                        if ((lane >> 2) == 0 && colOk && word < d.wppOut) y[static_cast<int64_t>(pix) * d.wppOut + word] = part;
                    }
                    // pad words after this warp's words, written by the warp that holds the last real word
                    if ((lane >> 2) == 0 && colOk && w0 <= realWords - 1 && realWords - 1 < w0 + WM / 2)
                        for (int32_t word = w0 + WM / 2; word < d.wppOut; ++word) y[static_cast<int64_t>(pix) * d.wppOut + word] = 0u;
                }
            }
    }  // packed output
#else
    __trap();  // never launched: bmmaCodeForCurrentDevice() keeps pre-sm_80 code off this kernel
#endif
}

template <int WM, int WN, int WARPS_M, int WARPS_N, typename T, bool PACKED_OUT, bool FUSED>
Status launchConfig(const bits::BmmaDims& d, const bits::BmmaPlan& pl, const uint32_t* xp, const uint4* frag,
                    const int32_t* table, const int32_t* popA, const Epilogue& ep, void* y, cudaStream_t stream) {
    const int64_t colsPerBlock = int64_t(WARPS_N) * WN * 8, tilesPerBlock = int64_t(WARPS_M) * WM;
    const int64_t gx = (d.pixOut + colsPerBlock - 1) / colsPerBlock, gy = (pl.mTiles + tilesPerBlock - 1) / tilesPerBlock;
    if (gx > 0x7fffffff || gy > 65535) return Status::kUnsupported;
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
    binaryBmmaConvKernel<WM, WN, WARPS_M, WARPS_N, T, PACKED_OUT, FUSED><<<grid, 32 * WARPS_M * WARPS_N, 0, stream>>>(
        d, pl, xp, frag, table, popA, ep.scale, ep.shift, ep.relu, y);
    return launchStatus();
}

// The tile shapes this build holds: (WM, WN, WARPS_M, WARPS_N) = a warp's 16-row x 8-column MMA tiles
// and the block's warps. Rows of a block = 16 WM WARPS_M, pixels = 8 WN WARPS_N. Tiles 8-11 are the
// fused kernel (P_a in the k-loop, no pre-pass, division-free set-up) on the four shapes the rule
// picks; they are bit-exact in the CPU model, and forced by the GPU tests and the bench_layers sweep.
// The rule keeps 0-7, the shapes timed on an H200, until the sweep has timed 8-11 (KERNELS.md).
constexpr BmmaTileShape kBmmaTiles[] = {
    {2, 8, 1, 4, false, "32x256 (warp 2x8, 1x4 warps)"},  {4, 4, 1, 4, false, "64x128 (warp 4x4, 1x4 warps)"},
    {4, 4, 2, 2, false, "128x64 (warp 4x4, 2x2 warps)"},  {2, 4, 2, 2, false, "64x64 (warp 2x4, 2x2 warps)"},
    {2, 4, 4, 1, false, "128x32 (warp 2x4, 4x1 warps)"},  {4, 2, 2, 2, false, "128x32 (warp 4x2, 2x2 warps)"},
    {2, 4, 1, 2, false, "32x64 (warp 2x4, 1x2 warps)"},   {2, 2, 2, 4, false, "64x64 (warp 2x2, 2x4 warps)"},
    {4, 4, 1, 4, true, "fused 64x128 (warp 4x4, 1x4 warps)"}, {4, 4, 2, 2, true, "fused 128x64 (warp 4x4, 2x2 warps)"},
    {4, 2, 2, 2, true, "fused 128x32 (warp 4x2, 2x2 warps)"}, {2, 2, 2, 4, true, "fused 64x64 (warp 2x2, 2x4 warps)"},
};
constexpr int32_t kNumBmmaTiles = static_cast<int32_t>(sizeof(kBmmaTiles) / sizeof(kBmmaTiles[0]));
thread_local int32_t tForcedTile = -1;  // binaryBmmaForceTile (tuning): -1 = the rule below

// Multiprocessors of the current device (cached per device; 0 when it cannot be queried).
int32_t currentSmCount() {
    constexpr int kMaxDevices = 64;
    static std::atomic<int> cache[kMaxDevices];  // 0 unknown
    int dev = 0, count = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (dev >= 0 && dev < kMaxDevices && (count = cache[dev].load(std::memory_order_relaxed)) > 0) return count;
    if (cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (dev >= 0 && dev < kMaxDevices) cache[dev].store(count, std::memory_order_relaxed);
    return count;
}

// The tile a forward runs: the forced one (tuning), else the rule.
int32_t chosenTile(const ConvGeometry& g) { return tForcedTile >= 0 ? tForcedTile : binaryBmmaTileRule(g, currentSmCount()); }

template <typename T, bool PACKED_OUT>
Status launchBmmaConv(int32_t tile, const bits::BmmaDims& d, const bits::BmmaPlan& pl, const uint32_t* xp,
                      const uint4* frag, const int32_t* table, const int32_t* popA, const Epilogue& ep, void* y,
                      cudaStream_t stream) {
#define CMC_BMMA_TILE(I, WM, WN, AM, AN, F) \
    case I: return launchConfig<WM, WN, AM, AN, T, PACKED_OUT, F>(d, pl, xp, frag, table, popA, ep, y, stream);
    switch (tile) {  // must list kBmmaTiles in order (static_asserts below)
        CMC_BMMA_TILE(0, 2, 8, 1, 4, false)
        CMC_BMMA_TILE(1, 4, 4, 1, 4, false)
        CMC_BMMA_TILE(2, 4, 4, 2, 2, false)
        CMC_BMMA_TILE(3, 2, 4, 2, 2, false)
        CMC_BMMA_TILE(4, 2, 4, 4, 1, false)
        CMC_BMMA_TILE(5, 4, 2, 2, 2, false)
        CMC_BMMA_TILE(6, 2, 4, 1, 2, false)
        CMC_BMMA_TILE(7, 2, 2, 2, 4, false)
        CMC_BMMA_TILE(8, 4, 4, 1, 4, true)
        CMC_BMMA_TILE(9, 4, 4, 2, 2, true)
        CMC_BMMA_TILE(10, 4, 2, 2, 2, true)
        CMC_BMMA_TILE(11, 2, 2, 2, 4, true)
        default: return Status::kInvalidArgument;
    }
#undef CMC_BMMA_TILE
}
static_assert(kNumBmmaTiles == 12, "launchBmmaConv's switch lists every tile shape");
static_assert(kBmmaTiles[3].wm == 2 && kBmmaTiles[3].wn == 4 && kBmmaTiles[3].warpsM == 2 && kBmmaTiles[7].warpsN == 4,
              "launchBmmaConv's switch matches kBmmaTiles");
static_assert(!kBmmaTiles[7].fused && kBmmaTiles[8].fused && kBmmaTiles[8].wm == 4 && kBmmaTiles[9].warpsM == 2 &&
                  kBmmaTiles[10].wn == 2 && kBmmaTiles[11].warpsN == 4 && kBmmaTiles[11].fused,
              "launchBmmaConv's switch matches kBmmaTiles (fused tiles)");

// The kernel whose attributes tell what code this binary holds for the device.
const void* probeKernel() {
    return reinterpret_cast<const void*>(&binaryBmmaConvKernel<2, 8, 1, 4, float, false, false>);
}

}  // namespace

int32_t currentSmVersion() {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return major * 10 + minor;
}

bool bmmaCodeForCurrentDevice() {
    constexpr int kMaxDevices = 64;
    static std::atomic<int> cache[kMaxDevices];  // 0 unknown, 1 yes, 2 no
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (dev >= 0 && dev < kMaxDevices) {
        const int known = cache[dev].load(std::memory_order_relaxed);
        if (known != 0) return known == 1;
    }
    bool ok = currentSmVersion() >= 80;
    if (ok) {
        cudaFuncAttributes attr{};
        if (cudaFuncGetAttributes(&attr, probeKernel()) != cudaSuccess) {
            cudaGetLastError();
            ok = false;
        } else {
            ok = attr.ptxVersion >= 80 && attr.binaryVersion >= 80;
        }
    }
    if (dev >= 0 && dev < kMaxDevices) cache[dev].store(ok ? 1 : 2, std::memory_order_relaxed);
    return ok;
}

Status launchPackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const void* x, uint32_t* xp,
                             cudaStream_t stream) {
    const int32_t hw = h * w, wpp = bits::wordsPerPixel(c);
    const int64_t total = int64_t(n) * wpp * hw;
    if (dtype == DType::kFloat32)
        packActivationsKernel<float><<<packGrid(total), kPackThreads, 0, stream>>>(n, c, hw, wpp, static_cast<const float*>(x), xp);
    else
        packActivationsKernel<__half><<<packGrid(total), kPackThreads, 0, stream>>>(n, c, hw, wpp, static_cast<const __half*>(x), xp);
    return launchStatus();
}

Status launchBmmaForward(const ConvGeometry& g, DType dtype, const uint32_t* xp, const unsigned char* prepared,
                         int32_t* popA, const Epilogue& ep, bool outputPacked, void* y, cudaStream_t stream) {
    const bits::BmmaDims d = bits::makeBmmaDims(g);
    const bits::BmmaPlan pl = bits::makeBmmaPlan(g.m, g.c, g.kh, g.kw);
    const bits::PreparedLayout L = binaryPreparedLayout(g);
    if (!L.bmma) return Status::kUnsupported;
    const int32_t tile = chosenTile(g);
    if (tile < 0 || tile >= kNumBmmaTiles) return Status::kInvalidArgument;
    if (!kBmmaTiles[tile].fused) {  // the fused kernel sums P_a itself
        const int popBlocks = static_cast<int>(std::min<int64_t>((int64_t(d.pixOut) + kPopThreads - 1) / kPopThreads, 1 << 16));
        if (reinterpret_cast<uintptr_t>(xp) % 16 == 0)
            pixelPopcountKernel<true><<<popBlocks, kPopThreads, 0, stream>>>(d, xp, popA);
        else
            pixelPopcountKernel<false><<<popBlocks, kPopThreads, 0, stream>>>(d, xp, popA);
        if (launchStatus() != Status::kSuccess) return Status::kCudaError;
    }
    const uint4* frag = reinterpret_cast<const uint4*>(prepared + L.fragOff);
    const int32_t* table = reinterpret_cast<const int32_t*>(prepared + L.tableOff);
    if (dtype == DType::kFloat32)
        return outputPacked ? launchBmmaConv<float, true>(tile, d, pl, xp, frag, table, popA, ep, y, stream)
                            : launchBmmaConv<float, false>(tile, d, pl, xp, frag, table, popA, ep, y, stream);
    return outputPacked ? launchBmmaConv<__half, true>(tile, d, pl, xp, frag, table, popA, ep, y, stream)
                        : launchBmmaConv<__half, false>(tile, d, pl, xp, frag, table, popA, ep, y, stream);
}

}  // namespace detail

namespace {

Status checkActivationArgs(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const void* a, const void* b) {
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || !a || !b) return Status::kInvalidArgument;
    if (dtype != DType::kFloat32 && dtype != DType::kFloat16) return Status::kInvalidArgument;
    const int64_t lim = 0x7fffffff;
    if (int64_t(n) * c * h * w >= lim || int64_t(n) * h * w * bits::wordsPerPixel(c) >= lim) return Status::kUnsupported;
    return Status::kSuccess;
}

}  // namespace

Status binaryPackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const void* x, int32_t* xPacked,
                             cudaStream_t stream) {
    const Status s = checkActivationArgs(n, c, h, w, dtype, x, xPacked);
    if (s != Status::kSuccess) return s;
    if (reinterpret_cast<uintptr_t>(xPacked) % 4 != 0) return Status::kInvalidArgument;
    return detail::launchPackActivations(n, c, h, w, dtype, x, reinterpret_cast<uint32_t*>(xPacked), stream);
}

Status binaryUnpackActivations(int32_t n, int32_t c, int32_t h, int32_t w, DType dtype, const int32_t* xPacked, void* x,
                               cudaStream_t stream) {
    const Status s = checkActivationArgs(n, c, h, w, dtype, xPacked, x);
    if (s != Status::kSuccess) return s;
    if (reinterpret_cast<uintptr_t>(xPacked) % 4 != 0) return Status::kInvalidArgument;
    const int32_t hw = h * w, wpp = bits::wordsPerPixel(c);
    const int64_t total = int64_t(n) * c * hw;
    const uint32_t* xp = reinterpret_cast<const uint32_t*>(xPacked);
    if (dtype == DType::kFloat32)
        detail::unpackActivationsKernel<float><<<detail::packGrid(total), detail::kPackThreads, 0, stream>>>(
            n, c, hw, wpp, xp, static_cast<float*>(x));
    else
        detail::unpackActivationsKernel<__half><<<detail::packGrid(total), detail::kPackThreads, 0, stream>>>(
            n, c, hw, wpp, xp, static_cast<__half*>(x));
    return detail::launchStatus();
}

Status binaryConvPrepareWeights(const ConvGeometry& g, const int32_t* wPacked, void* wPrepared, cudaStream_t s) {
    const Status st = detail::checkGeometry(g);
    if (st != Status::kSuccess) return st;
    if (!wPacked || !wPrepared || reinterpret_cast<uintptr_t>(wPrepared) % 16 != 0 ||
        reinterpret_cast<uintptr_t>(wPacked) % 4 != 0)
        return Status::kInvalidArgument;
    const bits::PreparedLayout L = binaryPreparedLayout(g);
    if (L.total == 0) return Status::kInvalidArgument;
    // zero first: alignment gaps included, so that the prepared bytes are a pure function of the weights
    if (cudaMemsetAsync(wPrepared, 0, L.total, s) != cudaSuccess) return Status::kCudaError;
    const bits::BmmaPlan pl = bits::makeBmmaPlan(g.m, g.cPerGroup(), g.kh, g.kw);
    const int64_t total = L.contractWords + L.fragWords + L.tableEntries;
    detail::prepareWeightsKernel<<<detail::packGrid(total), detail::kPackThreads, 0, s>>>(
        L, pl, g.m, g.cPerGroup(), g.kh, g.kw, reinterpret_cast<const uint32_t*>(wPacked),
        static_cast<unsigned char*>(wPrepared));
    return detail::launchStatus();
}

int32_t binaryBmmaTileCount() { return detail::kNumBmmaTiles; }

const char* binaryBmmaTileName(int32_t tile) {
    return tile >= 0 && tile < detail::kNumBmmaTiles ? detail::kBmmaTiles[tile].name : nullptr;
}

Status binaryBmmaForceTile(int32_t tile) {
    if (tile < -1 || tile >= detail::kNumBmmaTiles) return Status::kInvalidArgument;
    detail::tForcedTile = tile;
    return Status::kSuccess;
}

}  // namespace cmc
