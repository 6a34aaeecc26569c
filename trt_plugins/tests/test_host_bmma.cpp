// CPU tests of the BMMA BinaryConv path (no GPU): packed-activation layout, valid-tap ranges and
// the rectangle index, the k-step walk, the prepared weights, the kernel choice rule, and the
// whole kernel run lane by lane (bmma_model.cpp: the kernel's index functions + an m16n8k256
// AND-popc emulated from the PTX fragment tables) against a plain +-1 convolution in double, over
// odd / non-multiple-of-32/128 channels, stride, dilation, asymmetric pads, pads beyond the kernel,
// batch 1-64; integer sums compared exactly, packed outputs bit for bit.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "bmma_model.h"
#include "host_check.h"
#include "cmc_binary_host.h"
#include "cmc_binary_layout.h"

namespace {

using cmc_test::geom;
using cmc_test::gChecks;
using cmc_test::gFailed;

void testWordsAndMasks() {
    CHECK(cmc::binaryPackedWordsPerPixel(0) == 0);
    CHECK(cmc::binaryPackedWordsPerPixel(1) == 4);
    CHECK(cmc::binaryPackedWordsPerPixel(128) == 4);
    CHECK(cmc::binaryPackedWordsPerPixel(129) == 8);
    CHECK(cmc::binaryPackedWordsPerPixel(256) == 8);
    CHECK(cmc::binaryPackedWordsPerPixel(257) == 12);
    CHECK(cmc::bits::channelMask(40, 0) == 0xffffffffu);
    CHECK(cmc::bits::channelMask(40, 1) == 0xffu);
    CHECK(cmc::bits::channelMask(40, 2) == 0u);
    CHECK(cmc::bits::channelMask(64, 1) == 0xffffffffu);
    CHECK(cmc::bits::channelMask(1, 0) == 1u);
}

void testPackLayout() {
    // n=2, c=37, 2x3: word k of pixel p = channels 32k..32k+31 (LSB first), 4 words per pixel
    const int n = 2, c = 37, h = 2, w = 3;
    std::vector<float> x(size_t(n) * c * h * w);
    std::mt19937 rng(5);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    for (auto& v : x) v = uni(rng);
    x[0] = 0.0f;   // binarize(0) = +1
    x[1] = -0.0f;  // -0 >= 0 too
    x[2] = std::nanf("");  // NaN >= 0 is false: -1, as the reference's binarize
    std::vector<int32_t> packed(size_t(n) * h * w * 4, 0x5a5a5a5a);
    cmc::binaryPackActivationsPackedHost(n, c, h, w, x.data(), packed.data());
    bool ok = true;
    for (int nn = 0; nn < n; ++nn)
        for (int p = 0; p < h * w; ++p)
            for (int ch = 0; ch < 128; ++ch) {
                const uint32_t word = uint32_t(packed[(size_t(nn) * h * w + p) * 4 + ch / 32]);
                const int bit = (word >> (ch % 32)) & 1;
                const int want = ch < c ? (x[(size_t(nn) * c + ch) * h * w + p] >= 0.0f ? 1 : 0) : 0;
                ok = ok && bit == want;
            }
    CHECK(ok);
    // channel 0 of pixels 0, 1, 2 held 0, -0 and NaN: bits 1, 1, 0
    CHECK((uint32_t(packed[0 * 4]) & 1u) == 1u && (uint32_t(packed[1 * 4]) & 1u) == 1u && (uint32_t(packed[2 * 4]) & 1u) == 0u);
    std::vector<float> back(x.size());
    cmc::binaryUnpackActivationsHost(n, c, h, w, packed.data(), back.data());
    ok = true;
    for (size_t i = 0; i < x.size(); ++i) ok = ok && back[i] == (x[i] >= 0.0f ? 1.0f : -1.0f);
    CHECK(ok);
}

void testRanges() {
    int cases = 0;
    for (int size = 1; size <= 8; ++size)
        for (int k = 1; k <= 5; ++k)
            for (int s = 1; s <= 3; ++s)
                for (int d = 1; d <= 3; ++d)
                    for (int pad = 0; pad <= 6; ++pad)
                        for (int o = 0; o < 10; ++o) {
                            std::vector<int> taps;
                            for (int p = 0; p < k; ++p) {
                                const int i = o * s - pad + p * d;
                                if (i >= 0 && i < size) taps.push_back(p);
                            }
                            const cmc::bits::TapRange r = cmc::bits::validTapRange1D(o, size, k, s, pad, d);
                            const bool contiguous = taps.empty() || taps.back() - taps.front() + 1 == int(taps.size());
                            CHECK(contiguous);  // the rectangle argument rests on this
                            CHECK(cmc::bits::rangeSize(r) == int(taps.size()));
                            if (!taps.empty()) CHECK(r.lo == taps.front() && r.hi == taps.back());
                            CHECK(cmc::bits::rangeSize(r) == cmc::validTaps1D(o, size, k, s, pad, d));
                            ++cases;
                        }
    CHECK(cases > 10000);
    for (int k = 1; k <= 9; ++k) {
        std::set<int> seen;
        for (int lo = 0; lo < k; ++lo)
            for (int hi = lo; hi < k; ++hi) {
                cmc::bits::TapRange r;
                r.lo = lo;
                r.hi = hi;
                const int idx = cmc::bits::rangeIndex(r, k);
                CHECK(idx >= 0 && idx < cmc::bits::rangeCount(k) - 1);
                seen.insert(idx);
                const cmc::bits::TapRange back = cmc::bits::rangeFromIndex(idx, k);
                CHECK(back.lo == lo && back.hi == hi);
            }
        CHECK(int(seen.size()) == k * (k + 1) / 2);
        const cmc::bits::TapRange empty;
        CHECK(cmc::bits::rangeIndex(empty, k) == cmc::bits::rangeCount(k) - 1);
        CHECK(cmc::bits::rangeSize(cmc::bits::rangeFromIndex(cmc::bits::rangeCount(k) - 1, k)) == 0);
    }
}

void testStepWalk() {
    // every (tap, chunk) item appears exactly once; the walk equals the closed form; pairing choice
    const int cgs[] = {1, 64, 128, 129, 256, 300, 384, 512, 640};
    const int ks[][2] = {{1, 1}, {3, 3}, {1, 3}, {3, 1}, {5, 5}, {2, 2}, {7, 7}, {1, 2}};
    for (int cg : cgs)
        for (const auto& k : ks) {
            const cmc::bits::BmmaPlan p = cmc::bits::makeBmmaPlan(17, cg, k[0], k[1]);
            const int stepsA = ((p.taps + 1) / 2) * p.cpt, stepsB = p.taps * ((p.cpt + 1) / 2);
            CHECK(p.kSteps == (stepsA < stepsB ? stepsA : stepsB));
            CHECK(p.kSteps * 2 >= p.taps * p.cpt);
            std::set<std::pair<int, int>> items;
            int nonEmpty = 0;
            cmc::bits::BmmaStepIter it;
            it.start(p, k[1]);
            bool same = true;
            for (int s = 0; s < p.kSteps; ++s) {
                for (int h = 0; h < 2; ++h) {
                    const cmc::bits::BmmaItem want = cmc::bits::bmmaItem(p, s, h);
                    same = same && want.tap == it.item[h].tap && (want.tap < 0 || want.chunk == it.item[h].chunk);
                    if (want.tap >= 0) {
                        same = same && it.p[h] == want.tap / k[1] && it.q[h] == want.tap % k[1];
                        items.insert({want.tap, want.chunk});
                        ++nonEmpty;
                    }
                }
                it.next(p, k[1]);
            }
            CHECK(same);
            CHECK(nonEmpty == p.taps * p.cpt && int(items.size()) == nonEmpty);
        }
}

void testFastDivmod() {
    std::mt19937 rng(77);
    std::uniform_int_distribution<int32_t> any(0, 0x7ffffffe);
    const int32_t divisors[] = {1, 2, 3, 5, 7, 14, 28, 49, 56, 112, 196, 3136, 12544, 50176, 65535, 65536, 65537,
                                (1 << 20) + 1, 0x3fffffff, 0x40000000, 0x40000001, 0x7fffffff};
    bool ok = true;
    for (int32_t dv : divisors) {
        const cmc::math::FastDivmod f = cmc::math::makeFastDivmod(dv);
        const int64_t edges[] = {0, 1, int64_t(dv) - 1, dv, int64_t(dv) + 1, 2 * int64_t(dv) - 1, 0x7fffffff - 1, 0x7fffffff};
        for (int64_t e : edges) {
            if (e < 0 || e > 0x7fffffff) continue;  // the dividends the kernels divide: 0 <= n < 2^31
            const int32_t n = int32_t(e);
            int32_t q, r;
            cmc::math::fastDivmod(f, n, q, r);
            ok = ok && q == n / dv && r == n % dv;
        }
        for (int i = 0; i < 20000; ++i) {
            const int32_t n = any(rng);
            int32_t q, r;
            cmc::math::fastDivmod(f, n, q, r);
            ok = ok && q == n / dv && r == n % dv;
        }
    }
    for (int32_t dv = 1; dv <= 4096 && ok; ++dv) {  // every small divisor, dividends around its multiples
        const cmc::math::FastDivmod f = cmc::math::makeFastDivmod(dv);
        for (int32_t n = 0; n < 64 * dv; n += (dv > 8 ? dv / 8 : 1)) {
            int32_t q, r;
            cmc::math::fastDivmod(f, n, q, r);
            ok = ok && q == n / dv && r == n % dv;
        }
    }
    CHECK(ok);
}

// The fused kernel's division-free column set-up and terms equal the plain forms, on every pixel
// (and beyond the output: an empty column).
void testFastColumns() {
    const cmc::ConvGeometry cases[] = {
        geom(2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1),
        geom(1, 33, 7, 5, 17, 3, 3, 2, 2, 1, 1, 1, 1),
        geom(2, 70, 6, 6, 33, 3, 2, 1, 1, 0, 2, 1, 0),
        geom(1, 64, 9, 9, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),
        geom(2, 128, 5, 5, 40, 5, 5, 1, 1, 4, 4, 4, 4),
        geom(3, 40, 1, 1, 20, 3, 3, 1, 1, 5, 5, 5, 5),
        geom(1, 31, 8, 3, 9, 2, 3, 3, 1, 0, 0, 3, 2, 2, 1),
        geom(2, 96, 7, 7, 130, 7, 7, 2, 2, 3, 3, 3, 3),
        geom(1, 8, 40, 3, 8, 32, 2, 1, 1, 20, 1, 20, 1),   // 64 taps (32 x 2): the mask's top bit
        geom(1, 8, 3, 40, 8, 2, 32, 1, 1, 1, 20, 1, 20),   // 64 taps (2 x 32): 32-tap runs up to bit 63
        geom(4, 64, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1),
    };
    int interior = 0;
    for (const auto& g : cases) {
        CHECK(cmc::binaryBmmaSupportsGeometry(g));
        const cmc::bits::BmmaDims d = cmc::bits::makeBmmaDims(g);
        const cmc::bits::BmmaPlan p = cmc::bits::makeBmmaPlan(g.m, g.c, g.kh, g.kw);
        bool same = true;
        int full = 0;
        for (int32_t pix = 0; pix < d.pixOut + 9; ++pix) {
            const cmc::bits::BmmaColumn a = cmc::bits::bmmaColumn(d, pix), b = cmc::bits::bmmaColumnFast(d, pix);
            same = same && a.base == b.base && a.tapMask == b.tapMask;
            if (pix >= d.pixOut) continue;
            const cmc::bits::BmmaColumnTerms t = cmc::bits::bmmaColumnTerms(d, p, pix);
            const cmc::bits::BmmaColumnTerms u = cmc::bits::bmmaColumnTermsFast(d, p, pix);
            same = same && t.nImg == u.nImg && t.r == u.r && t.rect == u.rect && t.nValid == u.nValid;
            // the whole-window entry the fused kernel keeps per row: exactly the columns with every tap valid
            full += t.nValid == g.kh * g.kw;
            same = same && (t.rect == cmc::bits::bmmaFullRect(p, g.kh, g.kw)) == (t.nValid == g.kh * g.kw);
        }
        CHECK(same);
        interior += full;
    }
    CHECK(interior > 100);  // the grid has interior columns as well as border ones
}

void testChooseRule() {
    using cmc::BinaryKernel;
    const auto big = geom(64, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1);
    CHECK(cmc::binaryConvChooseKernel(big, true, 90) == BinaryKernel::kBmma);
    CHECK(cmc::binaryConvChooseKernel(big, true, 87) == BinaryKernel::kBmma);
    CHECK(cmc::binaryConvChooseKernel(big, true, 80) == BinaryKernel::kBmma);
    CHECK(cmc::binaryConvChooseKernel(big, true, 75) == BinaryKernel::kPopcount);  // sm_75: no AND-popc m16n8k256
    CHECK(cmc::binaryConvChooseKernel(big, false, 90) == BinaryKernel::kPopcount);  // float input
    auto grouped = big;
    grouped.groups = 2;
    CHECK(!cmc::binaryBmmaSupportsGeometry(grouped));
    CHECK(cmc::binaryConvChooseKernel(grouped, true, 90) == BinaryKernel::kPopcount);
    const auto tiny = geom(1, 3, 32, 32, 64, 3, 3, 1, 1, 1, 1, 1, 1);  // 3 channels: popcount
    CHECK(cmc::binaryBmmaSupportsGeometry(tiny));
    CHECK(cmc::binaryConvChooseKernel(tiny, true, 90) == BinaryKernel::kPopcount);
    const auto wide = geom(1, 64, 32, 32, 64, 9, 9, 1, 1, 4, 4, 4, 4);  // 81 taps: beyond the tap mask
    CHECK(!cmc::binaryBmmaSupportsGeometry(wide));
    const auto sevens = geom(1, 64, 32, 32, 64, 7, 7, 1, 1, 3, 3, 3, 3);
    CHECK(cmc::binaryBmmaSupportsGeometry(sevens));
    // prepared size: contract copy only without BMMA, more with it; independent of n/h/w/pads
    const size_t sz = cmc::binaryConvPreparedWeightsSize(big);
    auto other = big;
    other.n = 3; other.h = 9; other.w = 40; other.padTop = 0; other.strideW = 2; other.dilationH = 2;
    CHECK(cmc::binaryConvPreparedWeightsSize(other) == sz);
    CHECK(cmc::binaryConvPreparedWeightsSize(grouped) == size_t(256 * 9 * 4 * 4));
    CHECK(sz > size_t(256 * 9 * 8 * 4));
    auto bad = big;
    bad.groups = 3;
    CHECK(cmc::binaryConvPreparedWeightsSize(bad) == 0);
    // IO flags
    cmc::BinaryIO io;
    io.inputPacked = true;
    CHECK(cmc::binaryCheckIO(big, true, io) == cmc::Status::kSuccess);
    CHECK(cmc::binaryCheckIO(big, false, io) == cmc::Status::kInvalidArgument);
    CHECK(cmc::binaryCheckIO(grouped, true, io) == cmc::Status::kInvalidArgument);
    CHECK(cmc::binaryConvForwardExWorkspaceSize(grouped, cmc::DType::kFloat32, true, io) == 0);
    io.inputPacked = false;
    io.outputPacked = true;
    CHECK(cmc::binaryCheckIO(grouped, true, io) == cmc::Status::kSuccess);
    // the workspace covers either kernel
    const size_t ws = cmc::binaryConvForwardExWorkspaceSize(big, cmc::DType::kFloat16, true, io);
    CHECK(ws >= cmc::binaryExWorkspace(big, cmc::DType::kFloat16, true, io, BinaryKernel::kBmma).total);
    CHECK(ws >= cmc::binaryExWorkspace(big, cmc::DType::kFloat16, true, io, BinaryKernel::kPopcount).total);
    CHECK(cmc::binaryExWorkspace(big, cmc::DType::kFloat16, true, io, BinaryKernel::kPopcount).stagingBytes ==
          size_t(64) * 256 * 14 * 14 * 2);
}

// The tile rule on the layers it was tuned on (H200, 132 SMs; the shapes the sweep found fastest).
void testTileRule() {
    const int sms = 132;
    CHECK(cmc::binaryBmmaTileRule(geom(64, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1), sms) == 2);  // BNN workhorse
    CHECK(cmc::binaryBmmaTileRule(geom(32, 256, 28, 28, 256, 3, 3, 1, 1, 1, 1, 1, 1), sms) == 2);
    CHECK(cmc::binaryBmmaTileRule(geom(16, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1), sms) == 1);   // r18.l1
    CHECK(cmc::binaryBmmaTileRule(geom(16, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1), sms) == 7); // r18.l3
    CHECK(cmc::binaryBmmaTileRule(geom(16, 512, 7, 7, 512, 3, 3, 1, 1, 1, 1, 1, 1), sms) == 7);   // r18.l4
    CHECK(cmc::binaryBmmaTileRule(geom(16, 64, 56, 56, 256, 1, 1, 1, 1, 0, 0, 0, 0), sms) == 5);  // r50 1x1 64->256
    CHECK(cmc::binaryBmmaTileRule(geom(16, 1024, 14, 14, 256, 1, 1, 1, 1, 0, 0, 0, 0), sms) == 5);
    CHECK(cmc::binaryBmmaTileRule(geom(16, 256, 56, 56, 64, 1, 1, 1, 1, 0, 0, 0, 0), sms) == 7);
    // fewer multiprocessors (Jetson Orin: 16): the same layer counts as large sooner
    CHECK(cmc::binaryBmmaTileRule(geom(16, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1), 16) == 2);
    CHECK(cmc::binaryBmmaTileRule(geom(16, 256, 14, 14, 256, 3, 3, 1, 1, 1, 1, 1, 1), 0) == 2);  // unknown count
}

// +-1 convolution in double: the contract, for packed output (bits) and raw sums.
std::vector<double> bruteRaw(const cmc::ConvGeometry& g, const std::vector<float>& x, const std::vector<float>& w) {
    const int ho = g.outH(), wo = g.outW(), cg = g.cPerGroup();
    std::vector<double> acc(size_t(g.n) * g.m * ho * wo, 0.0);
    for (int n = 0; n < g.n; ++n)
        for (int m = 0; m < g.m; ++m)
            for (int oh = 0; oh < ho; ++oh)
                for (int ow = 0; ow < wo; ++ow) {
                    double s = 0;
                    for (int c = 0; c < cg; ++c)
                        for (int p = 0; p < g.kh; ++p)
                            for (int q = 0; q < g.kw; ++q) {
                                const int ih = oh * g.strideH - g.padTop + p * g.dilationH;
                                const int iw = ow * g.strideW - g.padLeft + q * g.dilationW;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                const float xv = x[((size_t(n) * g.c + c) * g.h + ih) * g.w + iw];
                                const float wv = w[((size_t(m) * cg + c) * g.kh + p) * g.kw + q];
                                s += (xv >= 0 ? 1.0 : -1.0) * (wv >= 0 ? 1.0 : -1.0);
                            }
                    acc[((size_t(n) * g.m + m) * ho + oh) * wo + ow] = s;
                }
    return acc;
}

void runModelCase(const cmc::ConvGeometry& g, std::mt19937& rng, bool zeros) {
    CHECK(g.validate() == cmc::Status::kSuccess);
    CHECK(cmc::binaryBmmaSupportsGeometry(g));
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    const int nw = cmc::binaryWordsPerTap(g.c), ho = g.outH(), wo = g.outW();
    std::vector<float> x(size_t(g.n) * g.c * g.h * g.w), w(size_t(g.m) * g.c * g.kh * g.kw);
    for (auto& v : x) v = uni(rng);
    for (auto& v : w) v = uni(rng);
    if (zeros)  // trained BNNs see exact zeros after a ReLU: binarize(0) = +1
        for (size_t i = 0; i < x.size(); i += 3) x[i] = 0.0f;
    std::vector<int32_t> wp(size_t(g.m) * g.kh * g.kw * nw);
    cmc::binaryPackWeightsHost(g, w.data(), wp.data());
    // garbage in the weights' tail bits must not matter (the prepared copy masks them)
    if (g.c % 32)
        for (size_t i = nw - 1; i < wp.size(); i += nw)
            wp[i] |= int32_t(0xA5A5A5A5u & ~cmc::bits::channelMask(g.c, nw - 1));
    const int wpp = cmc::binaryPackedWordsPerPixel(g.c);
    std::vector<int32_t> xp(size_t(g.n) * g.h * g.w * wpp);
    cmc::binaryPackActivationsPackedHost(g.n, g.c, g.h, g.w, x.data(), xp.data());
    // garbage in the activations' pad bits must not matter either (P_a masks them, P_ab never sees them)
    for (size_t i = 0; i < xp.size(); ++i)
        xp[i] |= int32_t(0x5A5A5A5Au & ~cmc::bits::channelMask(g.c, int32_t(i % wpp)));
    std::vector<unsigned char> prep(cmc::binaryConvPreparedWeightsSize(g) + 16);
    cmc::binaryConvPrepareWeightsHost(g, wp.data(), prep.data());

    const std::vector<double> want = bruteRaw(g, x, w);
    std::vector<float> ones(g.m, 1.0f), zerosV(g.m, 0.0f);
    std::vector<float> y(want.size(), -12345.0f);
    const int wppOut = cmc::binaryPackedWordsPerPixel(g.m);
    std::vector<int32_t> yp(size_t(g.n) * ho * wo * wppOut, 0x77777777);
    for (int fused = 0; fused < 2; ++fused) {
        std::fill(y.begin(), y.end(), -12345.0f);
        CHECK(cmc::model::bmmaForward(g, xp.data(), prep.data(), ones.data(), zerosV.data(), false, y.data(),
                                      yp.data(), fused != 0) == cmc::Status::kSuccess);
        bool exact = true;
        for (size_t i = 0; i < want.size(); ++i) exact = exact && double(y[i]) == want[i];
        if (!exact)
            std::fprintf(stderr, "  BMMA model (%s) != +-1 conv for n%d c%d h%d w%d m%d k%dx%d s%d,%d p%d,%d,%d,%d d%d,%d\n",
                         fused ? "fused" : "pre-pass", g.n, g.c, g.h, g.w, g.m, g.kh, g.kw, g.strideH, g.strideW,
                         g.padTop, g.padLeft, g.padBottom, g.padRight, g.dilationH, g.dilationW);
        CHECK(exact);
    }
    // epilogue with scale/shift/ReLU; packed bits = sign of the same float values, pad bits zero
    std::vector<float> scale(g.m), shift(g.m);
    for (int m = 0; m < g.m; ++m) {
        scale[m] = (m % 3 == 0 ? -0.75f : 0.5f) + 0.01f * m;
        shift[m] = (m % 5 == 0) ? 0.0f : 0.37f * ((m % 7) - 3);
    }
    for (int run = 0; run < 4; ++run) {
        const int relu = run & 1;
        const bool fused = run >= 2;  // the fused variant: P_a from the k-loop's B words
        CHECK(cmc::model::bmmaForward(g, xp.data(), prep.data(), scale.data(), shift.data(), relu != 0, y.data(),
                                      yp.data(), fused) == cmc::Status::kSuccess);
        bool valuesOk = true, bitsOk = true;
        for (int n = 0; n < g.n; ++n)
            for (int m = 0; m < g.m; ++m)
                for (int r = 0; r < ho * wo; ++r) {
                    const size_t i = (size_t(n) * g.m + m) * ho * wo + r;
                    volatile float prod = scale[m] * float(want[i]);  // the contract: two roundings
                    float v = prod + shift[m];
                    if (relu) v = std::fmax(v, 0.0f);
                    valuesOk = valuesOk && y[i] == v;
                    const uint32_t word = uint32_t(yp[(size_t(n) * ho * wo + r) * wppOut + m / 32]);
                    bitsOk = bitsOk && int((word >> (m % 32)) & 1u) == (v >= 0.0f ? 1 : 0);
                }
        CHECK(valuesOk);
        CHECK(bitsOk);
        bool padOk = true;
        for (size_t pix = 0; pix < size_t(g.n) * ho * wo; ++pix)
            for (int k = 0; k < wppOut; ++k)
                padOk = padOk && (uint32_t(yp[pix * wppOut + k]) & ~cmc::bits::channelMask(g.m, k)) == 0u;
        CHECK(padOk);
    }
}

void testModelGrid() {
    std::mt19937 rng(2024);
    const cmc::ConvGeometry cases[] = {
        geom(2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1),                  // 3 channels, pad 1
        geom(1, 33, 7, 5, 17, 3, 3, 2, 2, 1, 1, 1, 1),                // 33 channels, stride 2, m 17
        geom(2, 70, 6, 6, 33, 3, 2, 1, 1, 0, 2, 1, 0),                // asymmetric pads, rectangular kernel
        geom(1, 64, 9, 9, 16, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),          // dilation 2
        geom(2, 128, 5, 5, 40, 5, 5, 1, 1, 4, 4, 4, 4),               // pads beyond the kernel's reach
        geom(1, 129, 4, 5, 31, 3, 3, 1, 2, 1, 0, 2, 1, 1, 2),         // 129 channels (2 chunks), odd m
        geom(1, 200, 4, 4, 65, 1, 1),                                 // 1x1, pairs of chunks
        geom(1, 256, 6, 6, 32, 3, 3, 1, 1, 1, 1, 1, 1),               // the workhorse shape, small
        geom(1, 300, 3, 4, 48, 3, 3, 2, 1, 1, 1, 1, 1),               // 3 chunks, odd: tap pairing
        geom(64, 16, 3, 3, 8, 3, 3, 1, 1, 1, 1, 1, 1),                // batch 64
        geom(3, 40, 1, 1, 20, 3, 3, 1, 1, 5, 5, 5, 5),                // outputs with no valid tap at all
        geom(1, 31, 8, 3, 9, 2, 3, 3, 1, 0, 0, 3, 2, 2, 1),           // stride 3, dilation 2, kh 2
        geom(2, 96, 7, 7, 130, 7, 7, 2, 2, 3, 3, 3, 3),               // 7x7 stem-like, m 130
    };
    int idx = 0;
    for (const auto& g : cases) runModelCase(g, rng, (idx++ % 2) == 1);
}

void testModelRejects() {
    auto grouped = geom(1, 8, 4, 4, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2);
    std::vector<int32_t> dummy(1024, 0);
    float s = 1.0f;
    CHECK(cmc::model::bmmaForward(grouped, dummy.data(), dummy.data(), &s, &s, false, nullptr, nullptr) ==
          cmc::Status::kInvalidArgument);
}

}  // namespace

int main() {
    testWordsAndMasks();
    testPackLayout();
    testRanges();
    testStepWalk();
    testFastDivmod();
    testFastColumns();
    testChooseRule();
    testTileRule();
    testModelGrid();
    testModelRejects();
    std::printf("cmc BMMA host tests: %d checks, %d failed\n", gChecks, gFailed);
    return gFailed == 0 ? 0 : 1;
}
