// CPU unit tests of the host-side part of the cmc kernel API (plain C++, no CUDA): geometry
// validation, the valid-tap arithmetic used for zero padding, the mixed-radix index walk of the
// kernels, the int32 weight bit-packing layout of the BinaryConv contract, and the XNOR-popcount
// formulation with padding masks (checked exactly against a plain +-1 convolution).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cmc_conv_math.h"
#include "cmc_types.h"
#include "host_check.h"

namespace {

using cmc_test::geom;
using cmc_test::gChecks;
using cmc_test::gFailed;

// The epilogue rounds twice (scale*a, then + shift), never as one fused multiply-add: the case where the
// two differ in sign (0.1f*3 - fl(0.3): 0 with two roundings, -7.45e-9 fused) must come out as the
// PyTorch op and the ONNX body compute it.
void testEpilogueRounding() {
    const float scale = 0.1f, a = 3.0f, shift = -0.3f;
    volatile float prod = scale * a;
    const float twoRoundings = prod + shift;
    CHECK(cmc::math::mulThenAdd(scale, a, shift) == twoRoundings);
    CHECK(twoRoundings == 0.0f);
    CHECK(std::fma(scale, a, shift) < 0.0f);  // what a fused multiply-add would have given
}

void testStatusStrings() {
    using cmc::Status;
    const Status all[] = {Status::kSuccess, Status::kInvalidArgument, Status::kUnsupported, Status::kCudaError};
    for (Status a : all) {
        CHECK(cmc::statusString(a) != nullptr && std::strlen(cmc::statusString(a)) > 0);
        for (Status b : all)
            if (a != b) CHECK(std::strcmp(cmc::statusString(a), cmc::statusString(b)) != 0);
    }
}

void testGeometry() {
    using cmc::Status;
    auto ok = geom(2, 16, 32, 32, 32, 3, 3, 1, 1, 1, 1, 1, 1);
    CHECK(ok.validate() == Status::kSuccess);
    CHECK(ok.outH() == 32 && ok.outW() == 32);
    // stride 2 with pad 1: (32 + 2 - 3) / 2 + 1 = 16
    auto s2 = geom(1, 16, 32, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1);
    CHECK(s2.validate() == Status::kSuccess && s2.outH() == 16 && s2.outW() == 16);
    // dilation 2, no pad: 7 - 2*2 - 1 + 1 = 3
    auto d2 = geom(1, 3, 7, 9, 4, 3, 3, 1, 1, 0, 0, 0, 0, 2, 2);
    CHECK(d2.outH() == 3 && d2.outW() == 5);
    // asymmetric pads (t, l, b, r) = (0, 1, 2, 3)
    auto as = geom(1, 3, 5, 5, 4, 3, 3, 1, 1, 0, 1, 2, 3);
    CHECK(as.outH() == 5 && as.outW() == 7);
    // groups
    auto gr = geom(1, 12, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3);
    CHECK(gr.validate() == Status::kSuccess && gr.cPerGroup() == 4 && gr.mPerGroup() == 2);

    // every non-positive size or inconsistent grouping is rejected
    for (int field = 0; field < 14; ++field) {
        auto g = ok;
        int* f[] = {&g.n, &g.c, &g.h, &g.w, &g.m, &g.kh, &g.kw, &g.strideH, &g.strideW,
                    &g.dilationH, &g.dilationW, &g.groups, &g.padTop, &g.padRight};
        *f[field] = (field >= 12) ? -1 : 0;
        CHECK(g.validate() == Status::kInvalidArgument);
    }
    auto badC = ok; badC.groups = 3;  // 16 % 3 != 0
    CHECK(badC.validate() == Status::kInvalidArgument);
    auto badM = geom(1, 12, 5, 5, 7, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1, 3);  // 7 % 3 != 0
    CHECK(badM.validate() == Status::kInvalidArgument);
    auto empty = geom(1, 3, 4, 4, 4, 5, 5);  // kernel larger than the input
    CHECK(empty.validate() == Status::kInvalidArgument);
    auto emptyDil = geom(1, 3, 5, 5, 4, 3, 3, 1, 1, 0, 0, 0, 0, 3, 1);  // effective kernel 7 > 5
    CHECK(emptyDil.validate() == Status::kInvalidArgument);
    auto justFits = geom(1, 3, 4, 4, 4, 5, 5, 1, 1, 1, 0, 0, 1);  // 4 + 1 - 5 + 1 = 1
    CHECK(justFits.validate() == Status::kSuccess && justFits.outH() == 1 && justFits.outW() == 1);

    CHECK(cmc::checkKernelLimits(ok) == Status::kSuccess);
    auto huge = geom(1024, 1024, 64, 64, 64, 3, 3, 1, 1, 1, 1, 1, 1);  // 2^32 input elements
    CHECK(huge.validate() == Status::kSuccess);
    CHECK(cmc::checkKernelLimits(huge) == Status::kUnsupported);
}

void testValidTaps() {
    // closed form against counting, over a grid that includes pads larger than the kernel reach
    int cases = 0;
    for (int size = 1; size <= 9; ++size)
        for (int k = 1; k <= 5; ++k)
            for (int s = 1; s <= 3; ++s)
                for (int d = 1; d <= 3; ++d)
                    for (int pad = 0; pad <= 4; ++pad)
                        for (int o = 0; o < 12; ++o) {
                            int brute = 0;
                            for (int p = 0; p < k; ++p) {
                                const int i = o * s - pad + p * d;
                                brute += (i >= 0 && i < size) ? 1 : 0;
                            }
                            const int got = cmc::validTaps1D(o, size, k, s, pad, d);
                            if (got != brute) {
                                std::fprintf(stderr, "validTaps1D(o=%d size=%d k=%d s=%d pad=%d d=%d) = %d, want %d\n",
                                             o, size, k, s, pad, d, got, brute);
                            }
                            CHECK(got == brute);
                            ++cases;
                        }
    CHECK(cases > 10000);
    CHECK(cmc::math::floorDiv(-1, 3) == -1 && cmc::math::floorDiv(-3, 3) == -1 && cmc::math::floorDiv(-4, 3) == -2);
    CHECK(cmc::math::floorDiv(5, 3) == 1 && cmc::math::floorDiv(0, 3) == 0);
}

void testRadix() {
    using cmc::math::Radix3;
    const int radices[][2] = {{1, 1}, {3, 3}, {1, 7}, {5, 1}, {3, 1}, {7, 11}, {2, 32}};
    for (const auto& r : radices) {
        const int r1 = r[0], r2 = r[1];
        for (int start = 0; start < 50; start += 7)
            for (int step = 1; step <= 40; step += 3) {
                Radix3 v = cmc::math::radix3(start, r1, r2);
                const Radix3 st = cmc::math::radix3(step, r1, r2);
                Radix3 inc = v;
                for (int it = 0; it < 20; ++it) {
                    const int value = start + it * step;
                    const Radix3 want = cmc::math::radix3(value, r1, r2);
                    CHECK(v.d0 == want.d0 && v.d1 == want.d1 && v.d2 == want.d2);
                    CHECK((v.d0 * r1 + v.d1) * r2 + v.d2 == value);
                    cmc::math::radix3Add(v, st, r1, r2);
                }
                for (int it = 0; it < 60; ++it) {
                    const Radix3 want = cmc::math::radix3(start + it, r1, r2);
                    CHECK(inc.d0 == want.d0 && inc.d1 == want.d1 && inc.d2 == want.d2);
                    cmc::math::radix3Inc(inc, r1, r2);
                }
            }
    }
}

void testWordsAndWorkspace() {
    CHECK(cmc::binaryWordsPerTap(0) == 0);
    CHECK(cmc::binaryWordsPerTap(1) == 1);
    CHECK(cmc::binaryWordsPerTap(32) == 1);
    CHECK(cmc::binaryWordsPerTap(33) == 2);
    CHECK(cmc::binaryWordsPerTap(64) == 2);
    CHECK(cmc::binaryWordsPerTap(65) == 3);
    auto g = geom(2, 66, 5, 7, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2);  // cg = 33 -> 2 words per group
    // binaryConvForward's workspace: the prepared weights (here only the contract copy, 8*9*2 words:
    // groups > 1 has no BMMA part), then the Ex workspace; every region 256-byte aligned
    auto up = [](size_t v) { return (v + 255) / 256 * 256; };
    const size_t prepared = up(8 * 9 * 2 * 4);
    CHECK(cmc::binaryConvPreparedWeightsSize(g) == prepared);
    CHECK(cmc::binaryConvForwardWorkspaceSize(g, cmc::DType::kFloat32, true) == prepared + up(2 * 5 * 7 * 2 * 2 * 4));
    CHECK(cmc::binaryConvForwardWorkspaceSize(g, cmc::DType::kFloat32, false) == prepared + up(8 * 33 * 9 * 4));
    CHECK(cmc::binaryConvForwardWorkspaceSize(g, cmc::DType::kFloat16, false) == prepared + up(8 * 33 * 9 * 2));
    CHECK(cmc::adderConvForwardWorkspaceSize(g, cmc::DType::kFloat32) == 0);
    CHECK(cmc::adderConvBackwardWorkspaceSize(g) >= sizeof(double));
    auto bad = g; bad.groups = 4;
    CHECK(cmc::binaryConvForwardWorkspaceSize(bad, cmc::DType::kFloat32, true) == 0);
}

void testPackWeightsLayout() {
    // m = 2, cg = 33, 1 x 2 kernel: [M, Cg, kh, kw] -> [M, kh, kw, 2 words]
    auto g = geom(1, 33, 4, 4, 2, 1, 2);
    std::vector<float> w(2 * 33 * 2, -1.0f);
    auto at = [&](int m, int c, int q) -> float& { return w[(m * 33 + c) * 2 + q]; };
    // filter 0, tap q=0: channels 0, 5, 31 (sign bit), 32 (second word) are >= 0; 0.0 counts as +1
    at(0, 0, 0) = 0.5f; at(0, 5, 0) = 0.0f; at(0, 31, 0) = 2.0f; at(0, 32, 0) = 1.0f;
    // filter 0, tap q=1: all +1
    for (int c = 0; c < 33; ++c) at(0, c, 1) = 1.0f;
    // filter 1: -0.0 is >= 0 too (binarize(-0) = +1), everything else stays -1
    at(1, 7, 1) = -0.0f;
    std::vector<int32_t> packed(2 * 1 * 2 * 2, 12345);
    cmc::binaryPackWeightsHost(g, w.data(), packed.data());
    auto word = [&](int m, int q, int k) { return static_cast<uint32_t>(packed[(m * 2 + q) * 2 + k]); };
    CHECK(word(0, 0, 0) == ((1u << 0) | (1u << 5) | (1u << 31)));
    CHECK(packed[0] < 0);  // bit 31 set: a negative int32, as in the NumPy reference's view(np.int32)
    CHECK(word(0, 0, 1) == 1u);
    CHECK(word(0, 1, 0) == 0xffffffffu);
    CHECK(word(0, 1, 1) == 1u);  // tail bits zero
    CHECK(word(1, 0, 0) == 0u && word(1, 0, 1) == 0u);
    CHECK(word(1, 1, 0) == (1u << 7) && word(1, 1, 1) == 0u);
}

// Plain +-1 convolution in double, exactly as the contract states it.
void binaryConvBrute(const cmc::ConvGeometry& g, const std::vector<float>& x, const std::vector<float>& w,
                     const std::vector<float>& scale, const std::vector<float>& shift, bool relu,
                     std::vector<float>& y) {
    const int cg = g.cPerGroup(), mg = g.mPerGroup(), ho = g.outH(), wo = g.outW();
    y.assign(size_t(g.n) * g.m * ho * wo, 0.0f);
    for (int n = 0; n < g.n; ++n)
        for (int m = 0; m < g.m; ++m)
            for (int oh = 0; oh < ho; ++oh)
                for (int ow = 0; ow < wo; ++ow) {
                    double acc = 0;
                    for (int c = 0; c < cg; ++c)
                        for (int p = 0; p < g.kh; ++p)
                            for (int q = 0; q < g.kw; ++q) {
                                const int ih = oh * g.strideH - g.padTop + p * g.dilationH;
                                const int iw = ow * g.strideW - g.padLeft + q * g.dilationW;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;  // padded: 0
                                const float xv = x[((size_t(n) * g.c + (m / mg) * cg + c) * g.h + ih) * g.w + iw];
                                const float wv = w[((size_t(m) * cg + c) * g.kh + p) * g.kw + q];
                                acc += (xv >= 0 ? 1.0 : -1.0) * (wv >= 0 ? 1.0 : -1.0);
                            }
                    float v = float(acc) * scale[m] + shift[m];
                    if (relu && v < 0) v = 0;
                    y[((size_t(n) * g.m + m) * ho + oh) * wo + ow] = v;
                }
}

void testBinaryPopcModel() {
    std::mt19937 rng(1234);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    const cmc::ConvGeometry cases[] = {
        geom(2, 3, 5, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1),                 // tiny channels, pad 1
        geom(1, 33, 7, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1),                // 33 channels: 2 words, stride 2
        geom(2, 70, 6, 6, 3, 3, 2, 1, 1, 0, 2, 1, 0),                // asymmetric pads, 3 words
        geom(1, 64, 9, 9, 6, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2),          // dilation 2, exact 2 words
        geom(2, 12, 5, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3),       // groups 3
        geom(1, 8, 4, 4, 8, 5, 5, 1, 1, 4, 4, 4, 4, 1, 1, 8),        // depthwise, pads larger than reach
        geom(3, 40, 3, 3, 2, 1, 1),                                  // 1x1
    };
    for (const auto& g : cases) {
        CHECK(g.validate() == cmc::Status::kSuccess);
        const int cg = g.cPerGroup(), nw = cmc::binaryWordsPerTap(cg);
        std::vector<float> x(size_t(g.n) * g.c * g.h * g.w), w(size_t(g.m) * cg * g.kh * g.kw);
        for (auto& v : x) v = uni(rng);
        for (auto& v : w) v = uni(rng);
        x[0] = 0.0f;  // binarize(0) = +1
        std::vector<float> scale(g.m), shift(g.m);
        for (int m = 0; m < g.m; ++m) {
            scale[m] = 0.5f + 0.25f * m;
            shift[m] = 0.125f * m - 1.0f;
        }
        std::vector<int32_t> wp(size_t(g.m) * g.kh * g.kw * nw);
        cmc::binaryPackWeightsHost(g, w.data(), wp.data());
        std::vector<uint32_t> xp(size_t(g.n) * g.h * g.w * g.groups * nw);
        cmc::binaryPackActivationsHost(g, x.data(), xp.data());
        // tail bits of packed activations are zero
        const int tail = cg - 32 * (nw - 1);
        if (tail < 32)
            for (size_t i = nw - 1; i < xp.size(); i += nw) CHECK((xp[i] >> tail) == 0u);
        for (int relu = 0; relu < 2; ++relu) {
            std::vector<float> want, got(size_t(g.n) * g.m * g.outH() * g.outW(), -999.0f);
            binaryConvBrute(g, x, w, scale, shift, relu != 0, want);
            cmc::binaryConvForwardHostModel(g, xp.data(), wp.data(), scale.data(), shift.data(), relu != 0, got.data());
            bool same = true;
            for (size_t i = 0; i < want.size(); ++i) same = same && std::fabs(want[i] - got[i]) <= 1e-5f * (1 + std::fabs(want[i]));
            CHECK(same);
        }
    }
}

}  // namespace

int main() {
    testStatusStrings();
    testEpilogueRounding();
    testGeometry();
    testValidTaps();
    testRadix();
    testWordsAndWorkspace();
    testPackWeightsLayout();
    testBinaryPopcModel();
    std::printf("cmc host tests: %d checks, %d failed\n", gChecks, gFailed);
    return gFailed == 0 ? 0 : 1;
}
