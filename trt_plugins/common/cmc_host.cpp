// Host-side part of the cmc kernel API: plain C++, no CUDA (see cmc_types.h).
#include <cstring>
#include <limits>

#include "cmc_conv_math.h"
#include "cmc_types.h"

namespace cmc {

const char* statusString(Status s) {
    switch (s) {
        case Status::kSuccess: return "success";
        case Status::kInvalidArgument: return "invalid argument (geometry, groups or pointers inconsistent)";
        case Status::kUnsupported: return "unsupported (dtype, size or architecture not implemented)";
        case Status::kCudaError: return "CUDA error (see cudaGetLastError())";
    }
    return "unknown status";
}

Status ConvGeometry::validate() const {
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0 || m <= 0 || kh <= 0 || kw <= 0) return Status::kInvalidArgument;
    if (strideH <= 0 || strideW <= 0 || dilationH <= 0 || dilationW <= 0 || groups <= 0) return Status::kInvalidArgument;
    if (padTop < 0 || padLeft < 0 || padBottom < 0 || padRight < 0) return Status::kInvalidArgument;
    if (c % groups != 0 || m % groups != 0) return Status::kInvalidArgument;
    // Compute the extents in 64 bits so that absurd values cannot wrap into a "valid" output.
    const int64_t effH = int64_t(h) + padTop + padBottom - int64_t(dilationH) * (kh - 1) - 1;
    const int64_t effW = int64_t(w) + padLeft + padRight - int64_t(dilationW) * (kw - 1) - 1;
    if (effH < 0 || effW < 0) return Status::kInvalidArgument;  // output would be empty
    if (effH > std::numeric_limits<int32_t>::max() || effW > std::numeric_limits<int32_t>::max())
        return Status::kInvalidArgument;
    return Status::kSuccess;
}

int32_t binaryWordsPerTap(int32_t cPerGroup) { return cPerGroup > 0 ? (cPerGroup + 31) / 32 : 0; }

Status checkKernelLimits(const ConvGeometry& g) {
    const int64_t lim = std::numeric_limits<int32_t>::max();
    const int64_t xNum = int64_t(g.n) * g.c * g.h * g.w;
    const int64_t yNum = int64_t(g.n) * g.m * g.outH() * g.outW();
    const int64_t wNum = int64_t(g.m) * g.cPerGroup() * g.kh * g.kw;
    const int64_t xPackedWords = int64_t(g.n) * g.h * g.w * g.groups * binaryWordsPerTap(g.cPerGroup());
    if (xNum >= lim || yNum >= lim || wNum >= lim || xPackedWords >= lim) return Status::kUnsupported;
    if (g.groups > 65535) return Status::kUnsupported;  // gridDim.z
    return Status::kSuccess;
}

int32_t validTaps1D(int32_t o, int32_t size, int32_t k, int32_t stride, int32_t padBegin, int32_t dilation) {
    return math::validTaps1D(o, size, k, stride, padBegin, dilation);
}

size_t adderConvForwardWorkspaceSize(const ConvGeometry&, DType) { return 0; }

// One double: the sum of squares of gradW for the adaptive scale.
size_t adderConvBackwardWorkspaceSize(const ConvGeometry&) { return 256; }

void binaryPackWeightsHost(const ConvGeometry& g, const float* w, int32_t* packed) {
    const int32_t cg = g.cPerGroup(), nw = binaryWordsPerTap(cg), taps = g.kh * g.kw;
    for (int32_t m = 0; m < g.m; ++m)
        for (int32_t t = 0; t < taps; ++t)
            for (int32_t k = 0; k < nw; ++k) {
                uint32_t word = 0;
                for (int32_t b = 0; b < 32; ++b) {
                    const int32_t c = 32 * k + b;
                    if (c < cg && w[(int64_t(m) * cg + c) * taps + t] >= 0.0f) word |= (1u << b);
                }
                int32_t s;
                std::memcpy(&s, &word, sizeof(s));
                packed[(int64_t(m) * taps + t) * nw + k] = s;
            }
}

void binaryPackActivationsHost(const ConvGeometry& g, const float* x, uint32_t* packed) {
    const int32_t cg = g.cPerGroup(), nw = binaryWordsPerTap(cg);
    const int64_t hw = int64_t(g.h) * g.w;
    for (int32_t n = 0; n < g.n; ++n)
        for (int64_t p = 0; p < hw; ++p)
            for (int32_t gi = 0; gi < g.groups; ++gi)
                for (int32_t k = 0; k < nw; ++k) {
                    uint32_t word = 0;
                    for (int32_t b = 0; b < 32; ++b) {
                        const int32_t c = 32 * k + b;
                        if (c < cg && x[(int64_t(n) * g.c + gi * cg + c) * hw + p] >= 0.0f) word |= (1u << b);
                    }
                    packed[((int64_t(n) * hw + p) * g.groups + gi) * nw + k] = word;
                }
}

static inline int32_t popcount32(uint32_t v) {
    int32_t r = 0;
    while (v) {
        v &= v - 1;
        ++r;
    }
    return r;
}

void binaryConvForwardHostModel(const ConvGeometry& g, const uint32_t* xPacked, const int32_t* wPacked,
                                const float* scale, const float* shift, bool relu, float* y) {
    const int32_t cg = g.cPerGroup(), mg = g.mPerGroup(), nw = binaryWordsPerTap(cg);
    const int32_t ho = g.outH(), wo = g.outW(), taps = g.kh * g.kw;
    for (int32_t n = 0; n < g.n; ++n)
        for (int32_t m = 0; m < g.m; ++m) {
            const int32_t gi = m / mg;
            for (int32_t oh = 0; oh < ho; ++oh)
                for (int32_t ow = 0; ow < wo; ++ow) {
                    int32_t mism = 0;
                    for (int32_t p = 0; p < g.kh; ++p)
                        for (int32_t q = 0; q < g.kw; ++q) {
                            const int32_t ih = oh * g.strideH - g.padTop + p * g.dilationH;
                            const int32_t iw = ow * g.strideW - g.padLeft + q * g.dilationW;
                            const bool valid = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
                            const uint32_t mask = valid ? 0xffffffffu : 0u;
                            for (int32_t k = 0; k < nw; ++k) {
                                const uint32_t xw = valid ? xPacked[((int64_t(n) * g.h + ih) * g.w + iw) * g.groups * nw + gi * nw + k] : 0u;
                                const uint32_t ww = static_cast<uint32_t>(wPacked[(int64_t(m) * taps + p * g.kw + q) * nw + k]);
                                mism += popcount32((xw ^ ww) & mask);
                            }
                        }
                    const int32_t nValid = math::validTaps1D(oh, g.h, g.kh, g.strideH, g.padTop, g.dilationH) *
                                           math::validTaps1D(ow, g.w, g.kw, g.strideW, g.padLeft, g.dilationW);
                    const float b = float(cg * nValid - 2 * mism);
                    float v = scale[m] * b + shift[m];
                    if (relu && v < 0.0f) v = 0.0f;
                    y[((int64_t(n) * g.m + m) * ho + oh) * wo + ow] = v;
                }
        }
}

}  // namespace cmc
