// Index math of BinaryConv's bit layouts, shared by the CUDA kernels and the CPU model
// (__host__ __device__ under nvcc, plain inline C++ otherwise), so that the host tests in
// trt_plugins/tests run the very functions the kernels use:
//  - packed activations int32 [n, h, w, 4 * ceil(c / 128)] (channels fastest, 128-bit aligned);
//  - the BMMA implicit GEMM (mma.sync.m16n8k256 .b1 AND-popc): GEMM rows = output channels,
//    columns = output pixels, K = (tap, 128-bit chunk) items paired two per 256-bit k-step;
//  - the m16n8k256 fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k256");
//  - the exact +-1 dot product from AND-popcounts with zero padding after binarization.
//
// The dot product. For one output (filter m, pixel o), with a = bit(x) and b = bit(w) over the
// valid (unpadded) taps t and the real channels c < Cg:
//     B = sum_{t valid, c} (2a - 1)(2b - 1) = 4 * P_ab - 2 * P_a - 2 * P_b + Cg * nValid
// where P_ab = sum a & b, P_a = sum a, P_b = sum b, all over valid taps and real channels only.
//  - P_ab is what the AND-popc MMA accumulates: padded taps load all-zero activation words and
//    pad/tail bits are zero in the prepared weights, so nothing else enters it (even if the
//    activations' pad bits were not zero);
//  - P_a depends on the pixel only: one popcount pass over the packed input (masked to c bits);
//  - P_b depends on the filter and on WHICH taps are valid: the valid taps of an output form a
//    rectangle [pLo, pHi] x [qLo, qHi] of the kernel window (each 1-D range is contiguous), so
//    the prepared weights carry, per filter, the weight popcount of every such rectangle
//    (rangeCount(kh) x rangeCount(kw) entries; the empty range has its own index and entry 0).
// Every term is an exact integer (|B| <= Cg * kh * kw < 2^31), so B is exact before the epilogue.
#pragma once

#include <cmath>
#include <cstdint>

#include "cmc_conv_math.h"
#include "cmc_types.h"

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#endif

namespace cmc {
namespace bits {

constexpr int32_t kChunkWords = 4;  // 128 bits: the alignment of a packed pixel, half of a k-step
constexpr int32_t kMaxBmmaTaps = 64;         // tap validity is a 64-bit mask per column
constexpr int32_t kMaxBmmaRectEntries = 4096;  // rectangle-table entries per filter

CMC_HD int32_t chunksPerPixel(int32_t c) { return c > 0 ? (c + 127) / 128 : 0; }
CMC_HD int32_t wordsPerPixel(int32_t c) { return kChunkWords * chunksPerPixel(c); }

// The bits of word k that hold real channels (c channels): all ones, a low mask, or 0 (pad word).
CMC_HD uint32_t channelMask(int32_t c, int32_t k) {
    const int32_t rest = c - 32 * k;
    if (rest >= 32) return 0xffffffffu;
    if (rest <= 0) return 0u;
    return (1u << rest) - 1u;
}

CMC_HD int32_t popc32(uint32_t v) {
#if defined(__CUDA_ARCH__)
    return __popc(v);
#else
    return __builtin_popcount(v);
#endif
}

// A read-only global load (the texture path on the device, a plain load on the host).
template <typename T>
CMC_HD T loadRO(const T* p) {
#if defined(__CUDA_ARCH__)
    return __ldg(p);
#else
    return *p;
#endif
}

// ---- 1-D valid tap ranges -------------------------------------------------------------------
struct TapRange {
    int32_t lo = 0, hi = -1;  // taps lo..hi read real input; empty when hi < lo
};

// The taps p in [0, k) whose input coordinate o*stride - padBegin + p*dilation lies in [0, size).
CMC_HD TapRange validTapRange1D(int32_t o, int32_t size, int32_t k, int32_t stride, int32_t padBegin,
                                int32_t dilation) {
    const int32_t base = o * stride - padBegin;
    int32_t lo, hi;
    if (dilation == 1) {  // the common case, without the two integer divisions (kernel epilogues run this)
        lo = base >= 0 ? 0 : -base;
        hi = size - 1 - base;
    } else {
        lo = (base >= 0) ? 0 : ((-base) + dilation - 1) / dilation;
        hi = math::floorDiv(size - 1 - base, dilation);
    }
    if (lo < 0) lo = 0;
    if (hi > k - 1) hi = k - 1;
    TapRange r;
    if (hi >= lo) {
        r.lo = lo;
        r.hi = hi;
    }
    return r;
}

CMC_HD int32_t rangeSize(TapRange r) { return r.hi >= r.lo ? r.hi - r.lo + 1 : 0; }
// Number of distinct ranges of a k-tap window, the empty one included: k(k+1)/2 + 1.
CMC_HD int32_t rangeCount(int32_t k) { return k * (k + 1) / 2 + 1; }
// Dense index of a range: hi(hi+1)/2 + lo for lo <= hi; the empty range is k(k+1)/2.
CMC_HD int32_t rangeIndex(TapRange r, int32_t k) { return r.hi >= r.lo ? r.hi * (r.hi + 1) / 2 + r.lo : k * (k + 1) / 2; }
CMC_HD TapRange rangeFromIndex(int32_t idx, int32_t k) {
    TapRange r;
    for (int32_t hi = 0; hi < k; ++hi) {
        const int32_t first = hi * (hi + 1) / 2;
        if (idx < first + hi + 1) {
            r.lo = idx - first;
            r.hi = hi;
            return r;
        }
    }
    return r;  // idx == k(k+1)/2: empty
}

// ---- geometry as the BMMA code sees it ---------------------------------------------------------
struct BmmaDims {
    int32_t n, h, w, c, m, kh, kw;
    int32_t sh, sw, pt, pl, dh, dw;
    int32_t ho, wo, howo, pixOut;
    int32_t wppIn, wppOut;  // packed words per pixel of the input (c) and of a packed output (m)
    math::FastDivmod fdHowo, fdWo;  // pixel -> (image, oh * wo + ow) -> (oh, ow) without divisions
};

inline BmmaDims makeBmmaDims(const ConvGeometry& g) {
    BmmaDims d;
    d.n = g.n; d.h = g.h; d.w = g.w; d.c = g.c; d.m = g.m; d.kh = g.kh; d.kw = g.kw;
    d.sh = g.strideH; d.sw = g.strideW; d.pt = g.padTop; d.pl = g.padLeft;
    d.dh = g.dilationH; d.dw = g.dilationW;
    d.ho = g.outH(); d.wo = g.outW(); d.howo = d.ho * d.wo; d.pixOut = g.n * d.howo;
    d.wppIn = wordsPerPixel(g.c);
    d.wppOut = wordsPerPixel(g.m);
    d.fdHowo = math::makeFastDivmod(d.howo);
    d.fdWo = math::makeFastDivmod(d.wo);
    return d;
}

// Word k of pixel (n, ih, iw) of a packed tensor [n, h, w, wpp].
CMC_HD int64_t packedWordIndex(int32_t n, int32_t ih, int32_t iw, int32_t h, int32_t w, int32_t wpp, int32_t k) {
    return ((static_cast<int64_t>(n) * h + ih) * w + iw) * wpp + k;
}

// ---- the GEMM's K order ------------------------------------------------------------------------
// K is a sequence of items (tap, 128-bit chunk of that tap's pixel). A k-step (256 bits) holds two
// items, "half 0" (registers a0/a1 of A, b0 of B) and "half 1" (a2/a3, b1). Two pairings:
//  pairTaps = 1: step s = u * cpt + j holds chunk j of taps 2u and 2u+1 (the second may not exist:
//                an empty half, zeros), for an odd number of chunks per tap (cpt), e.g. Cg <= 128;
//  pairTaps = 0: step s = t * ceil(cpt/2) + v holds chunks 2v and 2v+1 of tap t (the second may not
//                exist), no waste when cpt is even.
// The plan takes whichever needs fewer k-steps (ties: pairTaps = 0).
struct BmmaPlan {
    int32_t cpt;       // 128-bit chunks per tap = chunksPerPixel(Cg)
    int32_t taps;      // kh * kw
    int32_t pairTaps;  // see above
    int32_t kSteps;    // 256-bit k-steps
    int32_t mTiles;    // ceil(m / 16): 16-row tiles of A
    int32_t rangesH, rangesW;  // rangeCount(kh), rangeCount(kw): rectangle-table extents
};

CMC_HD BmmaPlan makeBmmaPlan(int32_t m, int32_t cg, int32_t kh, int32_t kw) {
    BmmaPlan p;
    p.cpt = chunksPerPixel(cg);
    p.taps = kh * kw;
    const int32_t stepsPairTaps = ((p.taps + 1) / 2) * p.cpt;
    const int32_t stepsPairChunks = p.taps * ((p.cpt + 1) / 2);
    p.pairTaps = stepsPairTaps < stepsPairChunks ? 1 : 0;
    p.kSteps = p.pairTaps ? stepsPairTaps : stepsPairChunks;
    p.mTiles = (m + 15) / 16;
    p.rangesH = rangeCount(kh);
    p.rangesW = rangeCount(kw);
    return p;
}

struct BmmaItem {
    int32_t tap = -1;  // -1: an empty half (contributes nothing)
    int32_t chunk = 0;
};

// The item of half h (0 or 1) of k-step s (closed form; the kernels walk BmmaStepIter instead).
CMC_HD BmmaItem bmmaItem(const BmmaPlan& p, int32_t s, int32_t h) {
    BmmaItem it;
    if (p.pairTaps) {
        const int32_t u = s / p.cpt, j = s - u * p.cpt;
        const int32_t tap = 2 * u + h;
        if (tap < p.taps) {
            it.tap = tap;
            it.chunk = j;
        }
    } else {
        const int32_t nb = (p.cpt + 1) / 2;
        const int32_t t = s / nb, v = s - t * nb;
        const int32_t chunk = 2 * v + h;
        if (chunk < p.cpt) {
            it.tap = t;
            it.chunk = chunk;
        }
    }
    return it;
}

// Walks the k-steps in order without divisions: item0/item1 (+ their kernel-window rows/columns
// p, q) for the current step; next() moves to the following one. The window position of the step's
// first tap (tp, tq) advances by one or two taps per tap (pair) with a carry into the row, so no
// tap / kw division is left in the kernel's k-loop. Equal to bmmaItem (host-tested).
struct BmmaStepIter {
    BmmaItem item[2];
    int32_t p[2], q[2];
    int32_t u, j;    // pairTaps: tap pair and chunk; else: tap and chunk pair
    int32_t tp, tq;  // window row / column of tap 2u (pairTaps) or u

    CMC_HD static void advanceTap(int32_t& pp, int32_t& qq, int32_t kw) {
        if (++qq == kw) {
            qq = 0;
            ++pp;
        }
    }
    CMC_HD void setTap(int32_t h, int32_t tap, int32_t chunk, int32_t pp, int32_t qq, const BmmaPlan& pl) {
        const bool ok = tap < pl.taps && chunk < pl.cpt;
        item[h].tap = ok ? tap : -1;
        item[h].chunk = ok ? chunk : 0;
        p[h] = ok ? pp : 0;
        q[h] = ok ? qq : 0;
    }
    CMC_HD void load(const BmmaPlan& pl, int32_t kw) {
        if (pl.pairTaps) {
            int32_t p1 = tp, q1 = tq;
            advanceTap(p1, q1, kw);
            setTap(0, 2 * u, j, tp, tq, pl);
            setTap(1, 2 * u + 1, j, p1, q1, pl);
        } else {
            setTap(0, u, 2 * j, tp, tq, pl);
            setTap(1, u, 2 * j + 1, tp, tq, pl);
        }
    }
    CMC_HD void start(const BmmaPlan& pl, int32_t kw) {
        u = j = tp = tq = 0;
        load(pl, kw);
    }
    CMC_HD void next(const BmmaPlan& pl, int32_t kw) {
        const int32_t inner = pl.pairTaps ? pl.cpt : (pl.cpt + 1) / 2;
        if (++j == inner) {
            j = 0;
            ++u;
            advanceTap(tp, tq, kw);
            if (pl.pairTaps) advanceTap(tp, tq, kw);
            load(pl, kw);
        } else if (pl.pairTaps) {
            item[0].chunk = j;
            item[1].chunk = item[1].tap >= 0 ? j : 0;
        } else {
            item[0].chunk = 2 * j;
            const bool has1 = 2 * j + 1 < pl.cpt;
            item[1].tap = has1 ? item[0].tap : -1;
            item[1].chunk = has1 ? 2 * j + 1 : 0;
            p[1] = has1 ? p[0] : 0;
            q[1] = has1 ? q[0] : 0;
        }
    }
};

// Word offset, inside the packed input, of an item relative to the column's tap-0 base word
// (uint32 arithmetic: the base of a border column is "negative"; the sum is only used when the
// tap is valid, and then it is the true index, below 2^31).
CMC_HD uint32_t bmmaItemOffset(const BmmaDims& d, int32_t p, int32_t q, int32_t chunk) {
    return (static_cast<uint32_t>(p * d.dh) * static_cast<uint32_t>(d.w) + static_cast<uint32_t>(q * d.dw)) *
               static_cast<uint32_t>(d.wppIn) +
           static_cast<uint32_t>(chunk * kChunkWords);
}

// A GEMM column = an output pixel: where its tap (0, 0) would read, and which taps are valid.
struct BmmaColumn {
    uint32_t base = 0;     // word index of (n, oh*sh - pt, ow*sw - pl), modulo 2^32
    uint64_t tapMask = 0;  // bit p*kw + q set <=> tap (p, q) reads real input (0 for pix >= pixOut)
};

CMC_HD BmmaColumn bmmaColumn(const BmmaDims& d, int32_t pix) {
    BmmaColumn col;
    if (pix < 0 || pix >= d.pixOut) return col;
    const int32_t nn = pix / d.howo;
    const int32_t r = pix - nn * d.howo;
    const int32_t oh = r / d.wo, ow = r - (r / d.wo) * d.wo;
    const int32_t ih0 = oh * d.sh - d.pt, iw0 = ow * d.sw - d.pl;
    col.base = ((static_cast<uint32_t>(nn) * static_cast<uint32_t>(d.h) + static_cast<uint32_t>(ih0)) *
                    static_cast<uint32_t>(d.w) +
                static_cast<uint32_t>(iw0)) *
               static_cast<uint32_t>(d.wppIn);
    const TapRange rp = validTapRange1D(oh, d.h, d.kh, d.sh, d.pt, d.dh);
    const TapRange rq = validTapRange1D(ow, d.w, d.kw, d.sw, d.pl, d.dw);
    for (int32_t p = rp.lo; p <= rp.hi; ++p)
        for (int32_t q = rq.lo; q <= rq.hi; ++q) col.tapMask |= uint64_t(1) << (p * d.kw + q);
    return col;
}

// The valid taps of a column as a mask, without the tap loop: the kw-bit run [rq.lo, rq.hi] repeated
// on each valid window row (2 << hi wraps to 0 for hi = 63, and the difference is still the run).
CMC_HD uint64_t bmmaTapMask(TapRange rp, TapRange rq, int32_t kw) {
    if (rangeSize(rp) == 0 || rangeSize(rq) == 0) return 0;
    const uint64_t run = (uint64_t(2) << rq.hi) - (uint64_t(1) << rq.lo);
    uint64_t mask = 0;
    for (int32_t p = rp.lo; p <= rp.hi; ++p) mask |= run << (p * kw);
    return mask;
}

// bmmaColumn with the fast divisions of d and bmmaTapMask (what the fused kernel runs; host-tested equal).
CMC_HD BmmaColumn bmmaColumnFast(const BmmaDims& d, int32_t pix) {
    BmmaColumn col;
    if (pix < 0 || pix >= d.pixOut) return col;
    int32_t nn, r, oh, ow;
    math::fastDivmod(d.fdHowo, pix, nn, r);
    math::fastDivmod(d.fdWo, r, oh, ow);
    const int32_t ih0 = oh * d.sh - d.pt, iw0 = ow * d.sw - d.pl;
    col.base = ((static_cast<uint32_t>(nn) * static_cast<uint32_t>(d.h) + static_cast<uint32_t>(ih0)) *
                    static_cast<uint32_t>(d.w) +
                static_cast<uint32_t>(iw0)) *
               static_cast<uint32_t>(d.wppIn);
    col.tapMask = bmmaTapMask(validTapRange1D(oh, d.h, d.kh, d.sh, d.pt, d.dh),
                              validTapRange1D(ow, d.w, d.kw, d.sw, d.pl, d.dw), d.kw);
    return col;
}

// The B-operand word a lane loads for one half: word (lane & 3) of the item's chunk of the column's
// pixel, or 0 for an empty half / padded tap / column beyond the output.
CMC_HD uint32_t bmmaBWord(const uint32_t* x, const BmmaColumn& col, const BmmaItem& it, uint32_t itemOffset,
                          int32_t lane) {
    if (it.tap < 0 || !((col.tapMask >> it.tap) & 1u)) return 0u;
    return loadRO(x + (col.base + itemOffset + static_cast<uint32_t>(lane & 3)));
}

// ---- m16n8k256 .b1 fragments (PTX ISA) -----------------------------------------------------------
// groupID = lane >> 2, threadID_in_group = lane & 3.
// A (16 x 256, row-major), registers a0..a3: row = groupID + 8 * (r & 1), k = 128 * (r >> 1) +
//   32 * threadID_in_group + bit.  B (256 x 8, column-major), registers b0, b1: column = groupID,
//   k = 128 * r + 32 * threadID_in_group + bit.  C/D (16 x 8, s32), registers c0..c3:
//   row = groupID + 8 * (i >> 1), column = 2 * threadID_in_group + (i & 1).
// So k-step half h is the 128-bit item of half h, and the lane's word in it is threadID_in_group.
CMC_HD int32_t fragARow(int32_t lane, int32_t r) { return (lane >> 2) + 8 * (r & 1); }
CMC_HD int32_t fragAHalf(int32_t r) { return r >> 1; }
CMC_HD int32_t fragCRow(int32_t lane, int32_t i) { return (lane >> 2) + 8 * (i >> 1); }
CMC_HD int32_t fragCCol(int32_t lane, int32_t i) { return 2 * (lane & 3) + (i & 1); }

// ---- prepared weights --------------------------------------------------------------------------
// [contract copy: m*kh*kw*ceil(Cg/32) int32, tail bits masked]
// [A fragments (BMMA geometries only): uint32 [mTiles][kSteps][32 lanes][4 registers]]
// [rectangle table (BMMA only): int32 [m][rangesH][rangesW] = weight popcount over the rectangle]
// each region 256-byte aligned.
struct PreparedLayout {
    bool bmma = false;
    int64_t contractWords = 0, fragWords = 0, tableEntries = 0;
    size_t contractOff = 0, fragOff = 0, tableOff = 0, total = 0;
};

CMC_HD size_t alignUp256(size_t v) { return (v + 255) & ~static_cast<size_t>(255); }

// Index of register r of `lane` for m-tile mt and k-step s in the fragment region.
CMC_HD int64_t fragWordIndex(const BmmaPlan& p, int32_t mt, int32_t s, int32_t lane, int32_t r) {
    return ((static_cast<int64_t>(mt) * p.kSteps + s) * 32 + lane) * 4 + r;
}

// The value of that register: the contract word of (row, item tap, word 4*chunk + threadID_in_group),
// masked to real channels; 0 for rows >= m, empty halves and pad words.
CMC_HD uint32_t bmmaPreparedAWord(const BmmaPlan& p, int32_t m, int32_t cg, const uint32_t* wPacked, int32_t mt,
                                  int32_t s, int32_t lane, int32_t r) {
    const int32_t row = mt * 16 + fragARow(lane, r);
    const BmmaItem it = bmmaItem(p, s, fragAHalf(r));
    const int32_t nw = (cg + 31) / 32;
    const int32_t k = it.chunk * kChunkWords + (lane & 3);
    if (row >= m || it.tap < 0 || k >= nw) return 0u;
    return wPacked[(static_cast<int64_t>(row) * p.taps + it.tap) * nw + k] & channelMask(cg, k);
}

// Weight popcount of filter `row` over the rectangle (range rp of kh) x (range rq of kw).
CMC_HD int32_t bmmaRectPopcount(const BmmaPlan& p, int32_t cg, int32_t kh, int32_t kw, const uint32_t* wPacked,
                                int32_t row, int32_t rp, int32_t rq) {
    const TapRange a = rangeFromIndex(rp, kh), b = rangeFromIndex(rq, kw);
    const int32_t nw = (cg + 31) / 32;
    int32_t sum = 0;
    for (int32_t pp = a.lo; pp <= a.hi; ++pp)
        for (int32_t qq = b.lo; qq <= b.hi; ++qq)
            for (int32_t k = 0; k < nw; ++k)
                sum += popc32(wPacked[(static_cast<int64_t>(row) * p.taps + pp * kw + qq) * nw + k] & channelMask(cg, k));
    return sum;
}

CMC_HD int64_t rectTableIndex(const BmmaPlan& p, int32_t row, int32_t rp, int32_t rq) {
    return (static_cast<int64_t>(row) * p.rangesH + rp) * p.rangesW + rq;
}

// ---- per-column epilogue terms and the dot product ------------------------------------------------
struct BmmaColumnTerms {
    int32_t nImg = 0, r = 0;  // image and oh*wo + ow of the pixel
    int32_t rect = 0;         // rp * rangesW + rq: the column's rectangle in a filter's table
    int32_t nValid = 0;       // valid taps
};

CMC_HD BmmaColumnTerms bmmaColumnTerms(const BmmaDims& d, const BmmaPlan& p, int32_t pix) {
    BmmaColumnTerms t;
    t.nImg = pix / d.howo;
    t.r = pix - t.nImg * d.howo;
    const int32_t oh = t.r / d.wo, ow = t.r - (t.r / d.wo) * d.wo;
    const TapRange a = validTapRange1D(oh, d.h, d.kh, d.sh, d.pt, d.dh);
    const TapRange b = validTapRange1D(ow, d.w, d.kw, d.sw, d.pl, d.dw);
    t.rect = rangeIndex(a, d.kh) * p.rangesW + rangeIndex(b, d.kw);
    t.nValid = rangeSize(a) * rangeSize(b);
    return t;
}

// The rectangle index of a column whose every tap is valid (the whole window): in a filter's table,
// the entry the fused kernel loads once per row and uses for all such interior columns.
CMC_HD int32_t bmmaFullRect(const BmmaPlan& p, int32_t kh, int32_t kw) {
    TapRange a, b;
    a.lo = b.lo = 0;
    a.hi = kh - 1;
    b.hi = kw - 1;
    return rangeIndex(a, kh) * p.rangesW + rangeIndex(b, kw);
}

// bmmaColumnTerms with the fast divisions of d (host-tested equal).
CMC_HD BmmaColumnTerms bmmaColumnTermsFast(const BmmaDims& d, const BmmaPlan& p, int32_t pix) {
    BmmaColumnTerms t;
    int32_t oh, ow;
    math::fastDivmod(d.fdHowo, pix, t.nImg, t.r);
    math::fastDivmod(d.fdWo, t.r, oh, ow);
    const TapRange a = validTapRange1D(oh, d.h, d.kh, d.sh, d.pt, d.dh);
    const TapRange b = validTapRange1D(ow, d.w, d.kw, d.sw, d.pl, d.dw);
    t.rect = rangeIndex(a, d.kh) * p.rangesW + rangeIndex(b, d.kw);
    t.nValid = rangeSize(a) * rangeSize(b);
    return t;
}

// P_a folded into the k-loop (the fused kernel): a lane's share of its column's P_a from one B word it
// loaded for the MMA — the word's real channel bits. The B word is already 0 for a padded tap, an
// empty half or a column beyond the output, so summing this over the k-steps and over the four lanes
// of the column (threadID_in_group = word of the chunk) gives bmmaPixelPopcount exactly. Only the
// pixel's last 128-bit chunk can hold pad bits: lastMask = bmmaPaLastMask(c, lane), once per lane.
CMC_HD uint32_t bmmaPaLastMask(int32_t c, int32_t lane) {
    return channelMask(c, (chunksPerPixel(c) - 1) * kChunkWords + (lane & 3));
}
CMC_HD int32_t bmmaPaPart(uint32_t bWord, int32_t chunk, int32_t cpt, uint32_t lastMask) {
    return popc32(bWord & (chunk == cpt - 1 ? lastMask : 0xffffffffu));
}

// P_a of a pixel: popcount of the real channel bits of every valid tap (pad bits ignored).
CMC_HD int32_t bmmaPixelPopcount(const BmmaDims& d, const uint32_t* x, int32_t pix) {
    const BmmaColumn col = bmmaColumn(d, pix);
    int32_t sum = 0;
    for (int32_t p = 0; p < d.kh; ++p)
        for (int32_t q = 0; q < d.kw; ++q) {
            if (!((col.tapMask >> (p * d.kw + q)) & 1u)) continue;
            const uint32_t off = bmmaItemOffset(d, p, q, 0);
            for (int32_t k = 0; k < d.wppIn; ++k)
                sum += popc32(loadRO(x + (col.base + off + static_cast<uint32_t>(k))) & channelMask(d.c, k));
        }
    return sum;
}

// B = 4 P_ab - 2 P_a - 2 P_b + Cg nValid (see the top of this file); colTerm = Cg nValid - 2 P_a.
CMC_HD int32_t bmmaColumnTerm(int32_t cg, int32_t nValid, int32_t popA) { return cg * nValid - 2 * popA; }
CMC_HD int32_t bmmaDot(int32_t andPopc, int32_t popB, int32_t colTerm) { return 4 * andPopc - 2 * popB + colTerm; }

// The fused epilogue act(scale * B + shift) in float32, as every BinaryConv kernel computes it
// (math::mulThenAdd: the contract's two roundings, then ReLU), so host model and device agree to the bit.
CMC_HD float bmmaEpilogue(int32_t dot, float scale, float shift, bool relu) {
    const float v = math::mulThenAdd(scale, static_cast<float>(dot), shift);
    return relu ? fmaxf(v, 0.0f) : v;
}

// ---- packed output bits ----------------------------------------------------------------------------
// A warp tile covers whole 32-row words (an even number of 16-row m-tiles starting at an even one).
// Bit position of C register i of `lane` for m-tile mt inside word mt / 2.
CMC_HD int32_t packedOutBit(int32_t mt, int32_t lane, int32_t i) { return 16 * (mt & 1) + fragCRow(lane, i); }

}  // namespace bits
}  // namespace cmc
