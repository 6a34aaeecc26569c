// CPU model of the BMMA BinaryConv kernel (see bmma_model.h), plus a C ABI for ctypes.
#include "bmma_model.h"

#include <cstring>
#include <vector>

#include "cmc_binary_host.h"
#include "cmc_binary_layout.h"

namespace cmc {
namespace model {

// PTX ISA, "Matrix Fragments for mma.m16n8k256" (.b1), with groupID = lane >> 2 and
// threadID_in_group = lane % 4; element i of a fragment is bit i % 32 of register i / 32:
//   A (a0..a127): row = groupID for 0 <= i < 32 || 64 <= i < 96, groupID + 8 otherwise;
//                 col = threadID_in_group * 32 + (i & 0x1F), + 128 for i >= 64.
//   B (b0..b63):  row = threadID_in_group * 32 + (i & 0x1F), + 128 for i >= 32; col = groupID.
//   C (c0..c3):   row = groupID for i < 2, groupID + 8 otherwise; col = threadID_in_group * 2 + (i & 1).
// .and.popc: D[r][n] = C[r][n] + popc(A row r AND B column n).
void mmaM16N8K256AndPopc(const uint32_t a[32][4], const uint32_t b[32][2], int32_t c[32][4]) {
    static uint8_t A[16][256], B[256][8];
    std::memset(A, 0, sizeof(A));
    std::memset(B, 0, sizeof(B));
    for (int lane = 0; lane < 32; ++lane) {
        const int groupID = lane >> 2, tig = lane % 4;
        for (int i = 0; i < 128; ++i) {
            const int row = ((i < 32) || (i >= 64 && i < 96)) ? groupID : groupID + 8;
            const int col = tig * 32 + (i & 0x1F) + (i >= 64 ? 128 : 0);
            A[row][col] = (a[lane][i / 32] >> (i % 32)) & 1u;
        }
        for (int i = 0; i < 64; ++i) {
            const int row = tig * 32 + (i & 0x1F) + (i >= 32 ? 128 : 0);
            B[row][groupID] = (b[lane][i / 32] >> (i % 32)) & 1u;
        }
    }
    int32_t D[16][8];
    for (int r = 0; r < 16; ++r)
        for (int n = 0; n < 8; ++n) {
            int32_t s = 0;
            for (int k = 0; k < 256; ++k) s += A[r][k] & B[k][n];
            D[r][n] = s;
        }
    for (int lane = 0; lane < 32; ++lane) {
        const int groupID = lane >> 2, tig = lane % 4;
        for (int i = 0; i < 4; ++i) c[lane][i] += D[i < 2 ? groupID : groupID + 8][tig * 2 + (i & 1)];
    }
}

Status bmmaForward(const ConvGeometry& g, const int32_t* xPackedIn, const void* wPrepared, const float* scale,
                   const float* shift, bool relu, float* y, int32_t* yPacked, bool fused, uint16_t* yHalf) {
    if (!binaryBmmaSupportsGeometry(g)) return Status::kInvalidArgument;
    const bits::BmmaDims d = bits::makeBmmaDims(g);
    const bits::BmmaPlan p = bits::makeBmmaPlan(g.m, g.c, g.kh, g.kw);
    const bits::PreparedLayout L = binaryPreparedLayout(g);
    const unsigned char* prep = static_cast<const unsigned char*>(wPrepared);
    const uint32_t* frag = reinterpret_cast<const uint32_t*>(prep + L.fragOff);
    const int32_t* table = reinterpret_cast<const int32_t*>(prep + L.tableOff);
    const uint32_t* x = reinterpret_cast<const uint32_t*>(xPackedIn);

    // P_a per output pixel: the popA pre-pass of the kernel, or (fused) filled in below from the lanes
    std::vector<int32_t> popA(d.pixOut, -1);
    if (!fused)
        for (int32_t pix = 0; pix < d.pixOut; ++pix) popA[pix] = bits::bmmaPixelPopcount(d, x, pix);

    const int32_t mTilesPadded = (p.mTiles + 1) & ~1;  // warp tiles hold whole 32-row words
    const int32_t nTiles = (d.pixOut + 7) / 8;
    std::vector<int32_t> acc(size_t(mTilesPadded) * 32 * 4);
    for (int32_t nt = 0; nt < nTiles; ++nt) {
        const int32_t col0 = nt * 8;
        bits::BmmaColumn cols[32];
        for (int lane = 0; lane < 32; ++lane)
            cols[lane] = fused ? bits::bmmaColumnFast(d, col0 + (lane >> 2)) : bits::bmmaColumn(d, col0 + (lane >> 2));
        std::fill(acc.begin(), acc.end(), 0);
        int32_t paLane[32] = {};  // fused: each lane's share of its column's P_a (every warp sums the same)
        for (int32_t mt = 0; mt < p.mTiles; ++mt) {
            int32_t c[32][4] = {};
            bits::BmmaStepIter it;
            it.start(p, g.kw);
            for (int32_t s = 0; s < p.kSteps; ++s) {
                uint32_t a[32][4], b[32][2];
                const uint32_t off0 = bits::bmmaItemOffset(d, it.p[0], it.q[0], it.item[0].chunk);
                const uint32_t off1 = bits::bmmaItemOffset(d, it.p[1], it.q[1], it.item[1].chunk);
                for (int lane = 0; lane < 32; ++lane) {
                    for (int r = 0; r < 4; ++r) a[lane][r] = frag[bits::fragWordIndex(p, mt, s, lane, r)];
                    b[lane][0] = bits::bmmaBWord(x, cols[lane], it.item[0], off0, lane);
                    b[lane][1] = bits::bmmaBWord(x, cols[lane], it.item[1], off1, lane);
                }
                mmaM16N8K256AndPopc(a, b, c);
                if (fused && mt == 0)
                    for (int lane = 0; lane < 32; ++lane) {
                        const uint32_t last = bits::bmmaPaLastMask(g.c, lane);
                        paLane[lane] += bits::bmmaPaPart(b[lane][0], it.item[0].chunk, p.cpt, last) +
                                        bits::bmmaPaPart(b[lane][1], it.item[1].chunk, p.cpt, last);
                    }
                it.next(p, g.kw);
            }
            std::memcpy(&acc[size_t(mt) * 128], c, sizeof(c));
        }
        if (fused)  // the kernel's xor-shuffles over lane bits 0 and 1: the column's four lanes
            for (int gid = 0; gid < 8; ++gid) {
                const int32_t pix = col0 + gid;
                if (pix < d.pixOut)
                    popA[pix] = paLane[4 * gid] + paLane[4 * gid + 1] + paLane[4 * gid + 2] + paLane[4 * gid + 3];
            }
        // epilogue, lane by lane as the kernel does it
        const int32_t nWords = mTilesPadded / 2;
        std::vector<uint32_t> partial(size_t(32) * 2 * nWords, 0u);  // [lane][e][word]
        for (int lane = 0; lane < 32; ++lane)
            for (int e = 0; e < 2; ++e) {
                const int32_t pix = col0 + bits::fragCCol(lane, e);
                if (pix >= d.pixOut) continue;
                const bits::BmmaColumnTerms t = fused ? bits::bmmaColumnTermsFast(d, p, pix) : bits::bmmaColumnTerms(d, p, pix);
                const int32_t colTerm = bits::bmmaColumnTerm(g.c, t.nValid, popA[pix]);
                for (int32_t mt = 0; mt < p.mTiles; ++mt)
                    for (int hh = 0; hh < 2; ++hh) {
                        const int i = 2 * hh + e;
                        const int32_t row = mt * 16 + bits::fragCRow(lane, i);
                        if (row >= g.m) continue;
                        const int32_t popB = table[bits::rectTableIndex(p, row, 0, 0) + t.rect];
                        const int32_t dot = bits::bmmaDot(acc[(size_t(mt) * 32 + lane) * 4 + i], popB, colTerm);
                        const float v = bits::bmmaEpilogue(dot, scale[row], shift[row], relu);
                        if (y) y[(int64_t(t.nImg) * g.m + row) * d.howo + t.r] = v;
                        if (yHalf)
                            yHalf[(int64_t(t.nImg) * g.m + row) * d.howo + t.r] =
                                math::keepNonzeroHalfBits(v, math::halfBitsRoundNearest(v));
                        // the packed bit of v, which is also that of its float16 rounding (the rule above)
                        if (v >= 0.0f) partial[(size_t(lane) * 2 + e) * nWords + mt / 2] |= 1u << bits::packedOutBit(mt, lane, i);
                    }
            }
        if (!yPacked) continue;
        // the kernel ORs the partial words of the 8 lanes sharing threadID_in_group (xor-shuffles over
        // lane bits 2..4); the lane with groupID 0 stores the word, and the pad words after the last
        // covered one are stored as zeros
        uint32_t* out = reinterpret_cast<uint32_t*>(yPacked);
        for (int t = 0; t < 4; ++t)
            for (int e = 0; e < 2; ++e) {
                const int32_t pix = col0 + 2 * t + e;
                if (pix >= d.pixOut) continue;
                for (int32_t w = 0; w < nWords && w < d.wppOut; ++w) {
                    uint32_t word = 0;
                    for (int gid = 0; gid < 8; ++gid) word |= partial[(size_t(gid * 4 + t) * 2 + e) * nWords + w];
                    out[int64_t(pix) * d.wppOut + w] = word;
                }
                for (int32_t w = nWords; w < d.wppOut; ++w) out[int64_t(pix) * d.wppOut + w] = 0u;
            }
    }
    return Status::kSuccess;
}

}  // namespace model
}  // namespace cmc

// ---- C ABI for tests/trt_plugins (ctypes) -----------------------------------------------------------
extern "C" {

// geometry: n, c, h, w, m, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, groups (16 ints)
static cmc::ConvGeometry cmcModelGeometry(const int32_t* v) {
    cmc::ConvGeometry g;
    g.n = v[0]; g.c = v[1]; g.h = v[2]; g.w = v[3]; g.m = v[4]; g.kh = v[5]; g.kw = v[6];
    g.strideH = v[7]; g.strideW = v[8]; g.padTop = v[9]; g.padLeft = v[10]; g.padBottom = v[11];
    g.padRight = v[12]; g.dilationH = v[13]; g.dilationW = v[14]; g.groups = v[15];
    return g;
}

int cmc_model_supports_bmma(const int32_t* geom) { return cmc::binaryBmmaSupportsGeometry(cmcModelGeometry(geom)) ? 1 : 0; }

int cmc_model_packed_words_per_pixel(int32_t c) { return cmc::binaryPackedWordsPerPixel(c); }

long long cmc_model_prepared_size(const int32_t* geom) {
    return static_cast<long long>(cmc::binaryConvPreparedWeightsSize(cmcModelGeometry(geom)));
}

void cmc_model_pack_activations(int32_t n, int32_t c, int32_t h, int32_t w, const float* x, int32_t* packed) {
    cmc::binaryPackActivationsPackedHost(n, c, h, w, x, packed);
}

void cmc_model_prepare_weights(const int32_t* geom, const int32_t* wPacked, void* prepared) {
    cmc::binaryConvPrepareWeightsHost(cmcModelGeometry(geom), wPacked, prepared);
}

// y: float [n, m, ho, wo] or null; yPacked: int32 [n, ho, wo, wpp(m)] (every word written) or null;
// fused != 0: the fused kernel variant's P_a and column set-up.
int cmc_model_bmma_forward(const int32_t* geom, const int32_t* xPacked, const void* prepared, const float* scale,
                           const float* shift, int relu, float* y, int32_t* yPacked, int fused) {
    return static_cast<int>(cmc::model::bmmaForward(cmcModelGeometry(geom), xPacked, prepared, scale, shift,
                                                    relu != 0, y, yPacked, fused != 0));
}

// As above with the float16 output (bits, BinaryConv's float16 rounding) instead of the float32 one.
int cmc_model_bmma_forward_half(const int32_t* geom, const int32_t* xPacked, const void* prepared, const float* scale,
                                const float* shift, int relu, uint16_t* yHalf, int32_t* yPacked, int fused) {
    return static_cast<int>(cmc::model::bmmaForward(cmcModelGeometry(geom), xPacked, prepared, scale, shift,
                                                    relu != 0, nullptr, yPacked, fused != 0, yHalf));
}

// BinaryConv's float16 rounding of one float32 value (float16 bits), as the kernels store it.
uint16_t cmc_model_binary_half_bits(float v) {
    return cmc::math::keepNonzeroHalfBits(v, cmc::math::halfBitsRoundNearest(v));
}

}  // extern "C"
