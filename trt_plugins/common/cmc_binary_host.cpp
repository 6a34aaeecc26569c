// BinaryConv host side (plain C++, no CUDA): kernel choice rule, prepared-weight and workspace
// layouts, and host versions of packing / weight preparation built on cmc_binary_layout.h.
#include "cmc_binary_host.h"

#include <cstring>
#include <limits>

namespace cmc {

namespace {

constexpr int64_t kIndexLimit = std::numeric_limits<int32_t>::max();

size_t elemSize(DType dtype) { return dtype == DType::kFloat16 ? 2 : 4; }

}  // namespace

int32_t binaryPackedWordsPerPixel(int32_t c) { return bits::wordsPerPixel(c); }

bool binaryBmmaSupportsGeometry(const ConvGeometry& g) {
    if (g.validate() != Status::kSuccess || checkKernelLimits(g) != Status::kSuccess) return false;
    if (g.groups != 1) return false;
    if (int64_t(g.kh) * g.kw > bits::kMaxBmmaTaps) return false;
    if (int64_t(bits::rangeCount(g.kh)) * bits::rangeCount(g.kw) > bits::kMaxBmmaRectEntries) return false;
    const bits::BmmaPlan p = bits::makeBmmaPlan(g.m, g.c, g.kh, g.kw);
    const int64_t pixOut = int64_t(g.n) * g.outH() * g.outW();
    if (int64_t(g.n) * g.h * g.w * bits::wordsPerPixel(g.c) >= kIndexLimit) return false;   // packed input
    if (pixOut * bits::wordsPerPixel(g.m) >= kIndexLimit) return false;                      // packed output
    if (int64_t(p.mTiles) * p.kSteps * 128 >= kIndexLimit) return false;                     // A fragments
    if (int64_t(g.m) * p.rangesH * p.rangesW >= kIndexLimit) return false;                   // rect table
    if (pixOut + 1024 >= kIndexLimit) return false;                                          // grid rounding
    return true;
}

BinaryKernel binaryConvChooseKernel(const ConvGeometry& g, bool binarizeInput, int32_t smVersion) {
    // Provisional rule (trt_plugins/KERNELS.md): the tensor-core path needs sm_80+ and group 1; below
    // 64 channels the 128-bit aligned K of a tap is mostly zeros, so the popcount kernel stays.
    if (binarizeInput && smVersion >= 80 && binaryBmmaSupportsGeometry(g) && g.cPerGroup() >= 64)
        return BinaryKernel::kBmma;
    return BinaryKernel::kPopcount;
}

int32_t binaryBmmaTileRule(const ConvGeometry& g, int32_t smCount) {
    const bits::BmmaPlan p = bits::makeBmmaPlan(g.m, g.cPerGroup(), g.kh, g.kw);
    const int64_t pixels = int64_t(g.n) * g.outH() * g.outW();
    const int64_t workPerSm = int64_t(g.m) * pixels * p.kSteps / (smCount > 0 ? smCount : 1);
    if (workPerSm > 110000) return p.mTiles <= 4 ? 1 : 2;  // e.g. BNN 3x3 256->256 at 14x14 x 64 images
    // small problems: 128x32 blocks where the K walk is short and M wide (1x1 layers), else 64x64
    return (p.mTiles >= 16 && p.kSteps <= 4) ? 5 : 7;
}

bits::PreparedLayout binaryPreparedLayout(const ConvGeometry& g) {
    bits::PreparedLayout L;
    if (g.validate() != Status::kSuccess) return L;
    const int32_t cg = g.cPerGroup();
    L.contractWords = int64_t(g.m) * g.kh * g.kw * binaryWordsPerTap(cg);
    L.contractOff = 0;
    size_t end = bits::alignUp256(size_t(L.contractWords) * 4);
    L.bmma = binaryBmmaSupportsGeometry(g);
    if (L.bmma) {
        const bits::BmmaPlan p = bits::makeBmmaPlan(g.m, cg, g.kh, g.kw);
        L.fragWords = int64_t(p.mTiles) * p.kSteps * 32 * 4;
        L.fragOff = end;
        end = bits::alignUp256(end + size_t(L.fragWords) * 4);
        L.tableEntries = int64_t(g.m) * p.rangesH * p.rangesW;
        L.tableOff = end;
        end = bits::alignUp256(end + size_t(L.tableEntries) * 4);
    }
    L.total = end;
    return L;
}

size_t binaryConvPreparedWeightsSize(const ConvGeometry& g) { return binaryPreparedLayout(g).total; }

Status binaryCheckIO(const ConvGeometry& g, bool binarizeInput, BinaryIO io) {
    if (io.inputPacked && (!binarizeInput || g.groups != 1)) return Status::kInvalidArgument;
    return Status::kSuccess;
}

BinaryExWorkspace binaryExWorkspace(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io,
                                    BinaryKernel kernel) {
    BinaryExWorkspace ws;
    if (g.validate() != Status::kSuccess) return ws;
    const size_t es = elemSize(dtype);
    const size_t pixOut = size_t(g.n) * g.outH() * g.outW();
    size_t end = 0;
    auto region = [&](size_t bytes, size_t& off, size_t& size) {
        off = end;
        size = bytes;
        end = bits::alignUp256(end + bytes);
    };
    if (binarizeInput && kernel == BinaryKernel::kBmma) {
        if (!io.inputPacked)
            region(size_t(g.n) * g.h * g.w * bits::wordsPerPixel(g.c) * 4, ws.packedOff, ws.packedBytes);
        region(pixOut * 4, ws.popAOff, ws.popABytes);
    } else if (binarizeInput) {
        if (!io.inputPacked)  // the popcount kernel's own layout [n, h, w, groups, ceil(Cg/32)]
            region(size_t(g.n) * g.h * g.w * g.groups * binaryWordsPerTap(g.cPerGroup()) * 4, ws.packedOff,
                   ws.packedBytes);
        if (io.outputPacked) region(pixOut * g.m * es, ws.stagingOff, ws.stagingBytes);
    } else {
        region(size_t(g.m) * g.cPerGroup() * g.kh * g.kw * es, ws.wmOff, ws.wmBytes);
        if (io.outputPacked) region(pixOut * g.m * es, ws.stagingOff, ws.stagingBytes);
    }
    ws.total = end;
    return ws;
}

size_t binaryConvForwardExWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput, BinaryIO io) {
    if (g.validate() != Status::kSuccess || binaryCheckIO(g, binarizeInput, io) != Status::kSuccess) return 0;
    size_t need = binaryExWorkspace(g, dtype, binarizeInput, io, BinaryKernel::kPopcount).total;
    if (binarizeInput && binaryBmmaSupportsGeometry(g)) {
        const size_t bmma = binaryExWorkspace(g, dtype, binarizeInput, io, BinaryKernel::kBmma).total;
        if (bmma > need) need = bmma;
    }
    return need;
}

size_t binaryConvForwardWorkspaceSize(const ConvGeometry& g, DType dtype, bool binarizeInput) {
    if (g.validate() != Status::kSuccess) return 0;
    // binaryConvForward prepares the weights into the front of its workspace, then runs Ex.
    return bits::alignUp256(binaryConvPreparedWeightsSize(g)) +
           binaryConvForwardExWorkspaceSize(g, dtype, binarizeInput, BinaryIO{});
}

void binaryPackActivationsPackedHost(int32_t n, int32_t c, int32_t h, int32_t w, const float* x, int32_t* packed) {
    const int32_t wpp = bits::wordsPerPixel(c);
    const int64_t hw = int64_t(h) * w;
    for (int32_t nn = 0; nn < n; ++nn)
        for (int64_t p = 0; p < hw; ++p)
            for (int32_t k = 0; k < wpp; ++k) {
                uint32_t word = 0;
                for (int32_t b = 0; b < 32; ++b) {
                    const int32_t ch = 32 * k + b;
                    if (ch < c && x[(int64_t(nn) * c + ch) * hw + p] >= 0.0f) word |= 1u << b;
                }
                int32_t s;
                std::memcpy(&s, &word, sizeof(s));
                packed[(int64_t(nn) * hw + p) * wpp + k] = s;
            }
}

void binaryUnpackActivationsHost(int32_t n, int32_t c, int32_t h, int32_t w, const int32_t* packed, float* x) {
    const int32_t wpp = bits::wordsPerPixel(c);
    const int64_t hw = int64_t(h) * w;
    for (int32_t nn = 0; nn < n; ++nn)
        for (int32_t ch = 0; ch < c; ++ch)
            for (int64_t p = 0; p < hw; ++p) {
                const uint32_t word = static_cast<uint32_t>(packed[(int64_t(nn) * hw + p) * wpp + ch / 32]);
                x[(int64_t(nn) * c + ch) * hw + p] = ((word >> (ch % 32)) & 1u) ? 1.0f : -1.0f;
            }
}

void binaryConvPrepareWeightsHost(const ConvGeometry& g, const int32_t* wPackedIn, void* prepared) {
    const bits::PreparedLayout L = binaryPreparedLayout(g);
    if (L.total == 0) return;
    unsigned char* base = static_cast<unsigned char*>(prepared);
    std::memset(base, 0, L.total);
    const uint32_t* wPacked = reinterpret_cast<const uint32_t*>(wPackedIn);
    const int32_t cg = g.cPerGroup(), nw = binaryWordsPerTap(cg);
    uint32_t* contract = reinterpret_cast<uint32_t*>(base + L.contractOff);
    for (int64_t i = 0; i < L.contractWords; ++i) contract[i] = wPacked[i] & bits::channelMask(cg, int32_t(i % nw));
    if (!L.bmma) return;
    const bits::BmmaPlan p = bits::makeBmmaPlan(g.m, cg, g.kh, g.kw);
    uint32_t* frag = reinterpret_cast<uint32_t*>(base + L.fragOff);
    for (int32_t mt = 0; mt < p.mTiles; ++mt)
        for (int32_t s = 0; s < p.kSteps; ++s)
            for (int32_t lane = 0; lane < 32; ++lane)
                for (int32_t r = 0; r < 4; ++r)
                    frag[bits::fragWordIndex(p, mt, s, lane, r)] = bits::bmmaPreparedAWord(p, g.m, cg, wPacked, mt, s, lane, r);
    int32_t* table = reinterpret_cast<int32_t*>(base + L.tableOff);
    for (int32_t row = 0; row < g.m; ++row)
        for (int32_t rp = 0; rp < p.rangesH; ++rp)
            for (int32_t rq = 0; rq < p.rangesW; ++rq)
                table[bits::rectTableIndex(p, row, rp, rq)] = bits::bmmaRectPopcount(p, cg, g.kh, g.kw, wPacked, row, rp, rq);
}

}  // namespace cmc
