// GPU smoke test of the cmc kernels against plain host loops (the contracts' math). Exits 77, which
// ctest reports as skipped, when no CUDA device is present. The thorough grid is the pytest suite
// tests/trt_plugins/test_kernels_gpu.py; this one checks the C++ API without PyTorch.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <vector>

#include "cmc_binary_layout.h"
#include "cmc_kernels.h"

namespace {

int gFailed = 0;

#define CUDA_OK(x)                                                                             \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));   \
            std::exit(1);                                                                      \
        }                                                                                      \
    } while (0)

template <typename T>
T* upload(const std::vector<T>& h) {
    T* d = nullptr;
    CUDA_OK(cudaMalloc(&d, std::max<size_t>(1, h.size() * sizeof(T))));
    CUDA_OK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}

template <typename T>
std::vector<T> download(const T* d, size_t n) {
    std::vector<T> h(n);
    CUDA_OK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

double relErr(const std::vector<double>& want, const std::vector<double>& got) {
    double mx = 0, err = 0;
    for (size_t i = 0; i < want.size(); ++i) {
        mx = std::max(mx, std::fabs(want[i]));
        err = std::max(err, std::fabs(want[i] - got[i]));
    }
    return err / std::max(mx, 1e-30);
}

void expect(bool ok, const char* what, double err) {
    std::printf("%-44s %s (rel err %.3g)\n", what, ok ? "ok" : "FAILED", err);
    if (!ok) ++gFailed;
}

cmc::ConvGeometry makeGeom() {
    cmc::ConvGeometry g;
    g.n = 3; g.c = 18; g.h = 9; g.w = 11; g.m = 10; g.kh = 3; g.kw = 2;
    g.strideH = 2; g.strideW = 1; g.padTop = 1; g.padLeft = 0; g.padBottom = 2; g.padRight = 1;
    g.dilationH = 1; g.dilationW = 2; g.groups = 2;
    return g;
}

// A[n, m, i, j] = -sum |xpad - w|  (raw sum, double)
std::vector<double> adderRaw(const cmc::ConvGeometry& g, const std::vector<float>& x, const std::vector<float>& w) {
    const int cg = g.cPerGroup(), mg = g.mPerGroup(), ho = g.outH(), wo = g.outW();
    std::vector<double> a(size_t(g.n) * g.m * ho * wo);
    for (int n = 0; n < g.n; ++n)
        for (int m = 0; m < g.m; ++m)
            for (int i = 0; i < ho; ++i)
                for (int j = 0; j < wo; ++j) {
                    double s = 0;
                    for (int c = 0; c < cg; ++c)
                        for (int p = 0; p < g.kh; ++p)
                            for (int q = 0; q < g.kw; ++q) {
                                const int ih = i * g.strideH - g.padTop + p * g.dilationH;
                                const int iw = j * g.strideW - g.padLeft + q * g.dilationW;
                                const bool in = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
                                const double xv = in ? x[((size_t(n) * g.c + (m / mg) * cg + c) * g.h + ih) * g.w + iw] : 0.0;
                                s -= std::fabs(xv - w[((size_t(m) * cg + c) * g.kh + p) * g.kw + q]);
                            }
                    a[((size_t(n) * g.m + m) * ho + i) * wo + j] = s;
                }
    return a;
}

// BinaryConv through the prepared-weight API on every kernel the device has (popcount; BMMA on
// sm_80+), unpacked and packed output, and packed activations: raw +-1 sums (scale 1, shift 0) must
// equal the host loop exactly, packed bits must be the signs of the unpacked output.
void testBinaryPreparedKernels() {
    cmc::ConvGeometry g;
    g.n = 3; g.c = 70; g.h = 9; g.w = 11; g.m = 40; g.kh = 3; g.kw = 2;
    g.strideH = 2; g.strideW = 1; g.padTop = 1; g.padLeft = 0; g.padBottom = 2; g.padRight = 1;
    g.dilationH = 1; g.dilationW = 2; g.groups = 1;
    const int ho = g.outH(), wo = g.outW(), nw = cmc::binaryWordsPerTap(g.c);
    const size_t xN = size_t(g.n) * g.c * g.h * g.w, yN = size_t(g.n) * g.m * ho * wo;
    std::mt19937 rng(11);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::vector<float> x(xN), w(size_t(g.m) * g.c * g.kh * g.kw), ones(g.m, 1.0f), zeros(g.m, 0.0f);
    for (auto& v : x) v = uni(rng);
    for (size_t i = 0; i < x.size(); i += 5) x[i] = 0.0f;
    for (auto& v : w) v = uni(rng);
    std::vector<double> want(yN, 0.0);
    for (int n = 0; n < g.n; ++n)
        for (int m = 0; m < g.m; ++m)
            for (int i = 0; i < ho; ++i)
                for (int j = 0; j < wo; ++j) {
                    double acc = 0;
                    for (int c = 0; c < g.c; ++c)
                        for (int p = 0; p < g.kh; ++p)
                            for (int q = 0; q < g.kw; ++q) {
                                const int ih = i * g.strideH - g.padTop + p * g.dilationH;
                                const int iw = j * g.strideW - g.padLeft + q * g.dilationW;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                const double xv = x[((size_t(n) * g.c + c) * g.h + ih) * g.w + iw] >= 0 ? 1.0 : -1.0;
                                const double wv = w[((size_t(m) * g.c + c) * g.kh + p) * g.kw + q] >= 0 ? 1.0 : -1.0;
                                acc += xv * wv;
                            }
                    want[((size_t(n) * g.m + m) * ho + i) * wo + j] = acc;
                }
    std::vector<int32_t> wp(size_t(g.m) * g.kh * g.kw * nw);
    cmc::binaryPackWeightsHost(g, w.data(), wp.data());
    float *dx = upload(x), *dOnes = upload(ones), *dZeros = upload(zeros), *dy = nullptr;
    int32_t* dwp = upload(wp);
    CUDA_OK(cudaMalloc(&dy, yN * sizeof(float)));
    void* prep = nullptr;
    CUDA_OK(cudaMalloc(&prep, cmc::binaryConvPreparedWeightsSize(g)));
    expect(cmc::binaryConvPrepareWeights(g, dwp, prep, 0) == cmc::Status::kSuccess, "binaryConvPrepareWeights", 0.0);
    const int wppIn = cmc::binaryPackedWordsPerPixel(g.c), wppOut = cmc::binaryPackedWordsPerPixel(g.m);
    int32_t *dxp = nullptr, *dyp = nullptr;
    CUDA_OK(cudaMalloc(&dxp, size_t(g.n) * g.h * g.w * wppIn * 4));
    CUDA_OK(cudaMalloc(&dyp, size_t(g.n) * ho * wo * wppOut * 4));
    expect(cmc::binaryPackActivations(g.n, g.c, g.h, g.w, cmc::DType::kFloat32, dx, dxp, 0) == cmc::Status::kSuccess,
           "binaryPackActivations", 0.0);
    {  // the contract ignores a packed input's pad bits (channels 70..127 here): set them all, so that the
       // kernels' masking (the fused tiles' in-loop P_a among them) runs on the GPU under the sanitizer
        auto words = download(dxp, size_t(g.n) * g.h * g.w * wppIn);
        for (size_t i = 0; i < words.size(); ++i)
            words[i] = int32_t(uint32_t(words[i]) | ~cmc::bits::channelMask(g.c, int32_t(i % wppIn)));
        CUDA_OK(cudaMemcpy(dxp, words.data(), words.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
    }
    cmc::Epilogue ep{dOnes, dZeros, false};
    int dev = 0, major = 0;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    const cmc::BinaryKernel kernels[] = {cmc::BinaryKernel::kPopcount, cmc::BinaryKernel::kBmma};
    // BMMA: the rule's tile (-1), then every tile shape forced, the fused ones included, so that the
    // sanitizer run of this binary covers each kernel instantiation's memory accesses
    for (cmc::BinaryKernel k : kernels) {
        if (k == cmc::BinaryKernel::kBmma && major < 8) continue;
        const int32_t tiles = k == cmc::BinaryKernel::kBmma ? cmc::binaryBmmaTileCount() : 0;
        for (int32_t tile = -1; tile < tiles; ++tile) {
            expect(cmc::binaryBmmaForceTile(tile) == cmc::Status::kSuccess, "binaryBmmaForceTile", 0.0);
            char kname[96];
            if (k == cmc::BinaryKernel::kBmma)
                std::snprintf(kname, sizeof(kname), "BMMA tile %s", tile < 0 ? "by rule" : cmc::binaryBmmaTileName(tile));
            else
                std::snprintf(kname, sizeof(kname), "popcount");
            for (int inPacked = 0; inPacked < 2; ++inPacked) {
                cmc::BinaryIO io;
                io.inputPacked = inPacked != 0;
                const size_t wsBytes = cmc::binaryConvForwardExWorkspaceSize(g, cmc::DType::kFloat32, true, io);
                void* ws = nullptr;
                CUDA_OK(cudaMalloc(&ws, std::max<size_t>(wsBytes, 1)));
                const void* xin = inPacked ? static_cast<const void*>(dxp) : static_cast<const void*>(dx);
                cmc::Status s = cmc::binaryConvForwardWith(k, g, cmc::DType::kFloat32, true, io, xin, prep, ep, dy, ws, wsBytes, 0);
                CUDA_OK(cudaDeviceSynchronize());
                auto y = download(dy, yN);
                bool exact = s == cmc::Status::kSuccess;
                for (size_t i = 0; i < yN; ++i) exact = exact && double(y[i]) == want[i];
                char what[192];
                std::snprintf(what, sizeof(what), "binary %s%s raw sums exact", kname, inPacked ? " (packed in)" : "");
                expect(exact, what, 0.0);
                io.outputPacked = true;
                const size_t wsBytes2 = cmc::binaryConvForwardExWorkspaceSize(g, cmc::DType::kFloat32, true, io);
                void* ws2 = nullptr;
                CUDA_OK(cudaMalloc(&ws2, std::max<size_t>(wsBytes2, 1)));
                s = cmc::binaryConvForwardWith(k, g, cmc::DType::kFloat32, true, io, xin, prep, ep, dyp, ws2, wsBytes2, 0);
                CUDA_OK(cudaDeviceSynchronize());
                auto yp = download(dyp, size_t(g.n) * ho * wo * wppOut);
                bool bits = s == cmc::Status::kSuccess;
                for (int n = 0; n < g.n; ++n)
                    for (int m = 0; m < g.m; ++m)
                        for (int r = 0; r < ho * wo; ++r) {
                            const uint32_t word = uint32_t(yp[(size_t(n) * ho * wo + r) * wppOut + m / 32]);
                            bits = bits && int((word >> (m % 32)) & 1u) == (want[(size_t(n) * g.m + m) * ho * wo + r] >= 0 ? 1 : 0);
                        }
                for (size_t pix = 0; pix < size_t(g.n) * ho * wo; ++pix)  // channels 40..127 are pad bits
                    bits = bits && (uint32_t(yp[pix * wppOut + 1]) >> 8) == 0u && yp[pix * wppOut + 2] == 0 && yp[pix * wppOut + 3] == 0;
                std::snprintf(what, sizeof(what), "binary %s%s packed out = signs", kname, inPacked ? " (packed in)" : "");
                expect(bits, what, 0.0);
                cudaFree(ws);
                cudaFree(ws2);
            }
        }
    }
    expect(cmc::binaryBmmaForceTile(-1) == cmc::Status::kSuccess, "binaryBmmaForceTile(-1)", 0.0);
    expect(cmc::binaryBmmaForceTile(cmc::binaryBmmaTileCount()) == cmc::Status::kInvalidArgument,
           "binaryBmmaForceTile past the last tile rejected", 0.0);
    // flags that cannot go together, and a forced BMMA where it cannot run
    cmc::BinaryIO bad;
    bad.inputPacked = true;
    expect(cmc::binaryConvForwardEx(g, cmc::DType::kFloat32, false, bad, dxp, prep, ep, dy, nullptr, 0, 0) ==
               cmc::Status::kInvalidArgument, "packed input without binarize rejected", 0.0);
    if (major < 8)
        expect(cmc::binaryConvForwardWith(cmc::BinaryKernel::kBmma, g, cmc::DType::kFloat32, true, cmc::BinaryIO{}, dx,
                                          prep, ep, dy, nullptr, 0, 0) == cmc::Status::kUnsupported,
               "BMMA refused below sm_80", 0.0);
    cudaFree(dx); cudaFree(dOnes); cudaFree(dZeros); cudaFree(dy); cudaFree(dwp); cudaFree(prep);
    cudaFree(dxp); cudaFree(dyp);
}

// Trained-AdderNet numerics for the AdderConv cases (the recipe of tests/plugins/adder_data.py): inputs
// are post-BatchNorm/ReLU activations (relu(N(0,1)), exact zeros included), weights N(0,1) scaled to
// max |w| = 60, and the epilogue is a BatchNorm fitted to the layer's own raw sums (per channel
// scale = 1/sigma, shift = -mu/sigma over the batch), so an error in A shows at its true size in Y.
struct AdderData {
    std::vector<float> x, w, scale, shift;
};

constexpr double kWMax = 60.0;

void fitEpilogue(const cmc::ConvGeometry& g, const std::vector<double>& a, std::vector<float>& scale,
                 std::vector<float>& shift) {
    const size_t hw = size_t(g.outH()) * g.outW();
    scale.assign(g.m, 1.0f);
    shift.assign(g.m, 0.0f);
    for (int m = 0; m < g.m; ++m) {
        double s = 0, s2 = 0;
        const double cnt = double(g.n) * hw;
        for (int n = 0; n < g.n; ++n)
            for (size_t i = 0; i < hw; ++i) {
                const double v = a[(size_t(n) * g.m + m) * hw + i];
                s += v;
                s2 += v * v;
            }
        const double mu = s / cnt;
        const double sigma = std::max(std::sqrt(std::max(s2 / cnt - mu * mu, 0.0)), 1e-6 * std::max(std::fabs(mu), 1.0));
        scale[m] = float(1.0 / sigma);
        shift[m] = float(-mu / sigma);
    }
}

AdderData adderData(const cmc::ConvGeometry& g, std::mt19937& rng) {
    std::normal_distribution<float> normal(0.0f, 1.0f);
    AdderData d;
    d.x.resize(size_t(g.n) * g.c * g.h * g.w);
    d.w.resize(size_t(g.m) * g.cPerGroup() * g.kh * g.kw);
    for (auto& v : d.x) v = std::max(0.0f, normal(rng));
    double wmax = 0;
    for (auto& v : d.w) {
        v = normal(rng);
        wmax = std::max(wmax, double(std::fabs(v)));
    }
    for (auto& v : d.w) v = float(v * (kWMax / wmax));
    return d;
}

std::vector<double> applyEpilogue(const cmc::ConvGeometry& g, const std::vector<double>& a, const std::vector<float>& scale,
                                  const std::vector<float>& shift, bool relu) {
    const size_t hw = size_t(g.outH()) * g.outW();
    std::vector<double> y(a.size());
    for (size_t i = 0; i < a.size(); ++i) {
        const int m = int((i / hw) % g.m);
        const double v = a[i] * scale[m] + shift[m];
        y[i] = relu ? std::max(0.0, v) : v;
    }
    return y;
}

}  // namespace

int main() {
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        std::printf("no CUDA device: skipped\n");
        return 77;
    }
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> uni(-1.5f, 1.5f);
    const cmc::ConvGeometry g = makeGeom();
    const int cg = g.cPerGroup(), ho = g.outH(), wo = g.outW();
    const size_t xN = size_t(g.n) * g.c * g.h * g.w, wN = size_t(g.m) * cg * g.kh * g.kw, yN = size_t(g.n) * g.m * ho * wo;
    std::vector<float> x(xN), w(wN), scale(g.m), shift(g.m);
    for (auto& v : x) v = uni(rng);
    for (auto& v : w) v = uni(rng);
    for (int m = 0; m < g.m; ++m) { scale[m] = 0.5f + 0.1f * m; shift[m] = 0.3f * m - 1.0f; }
    float *dx = upload(x), *dw = upload(w), *dscale = upload(scale), *dshift = upload(shift);
    float* dy = nullptr;
    CUDA_OK(cudaMalloc(&dy, yN * sizeof(float)));
    cmc::Epilogue ep{dscale, dshift, true};

    // AdderConv forward, trained-AdderNet numerics (see adderData), checked after the fitted epilogue.
    AdderData ad = adderData(g, rng);
    fitEpilogue(g, adderRaw(g, ad.x, ad.w), ad.scale, ad.shift);
    float *dxa = upload(ad.x), *dwa = upload(ad.w), *dscaleA = upload(ad.scale), *dshiftA = upload(ad.shift);
    cmc::Epilogue epA{dscaleA, dshiftA, true};
    cmc::Status s = cmc::adderConvForward(g, cmc::DType::kFloat32, dxa, dwa, epA, dy, nullptr, 0, 0);
    CUDA_OK(cudaDeviceSynchronize());
    {
        const std::vector<double> want = applyEpilogue(g, adderRaw(g, ad.x, ad.w), ad.scale, ad.shift, true);
        auto y = download(dy, yN);
        const double e = relErr(want, std::vector<double>(y.begin(), y.end()));
        expect(s == cmc::Status::kSuccess && e < 2e-3, "adderConvForward fp32", e);
    }
    // FP16 activations: X/Y half, W float32, float32 arithmetic.
    {
        std::vector<__half> xh(xN);
        std::vector<float> xr(xN);  // the half inputs, widened (exactly)
        for (size_t i = 0; i < xN; ++i) { xh[i] = __float2half(ad.x[i]); xr[i] = __half2float(xh[i]); }
        const std::vector<double> want = applyEpilogue(g, adderRaw(g, xr, ad.w), ad.scale, ad.shift, true);
        __half *dxh = upload(xh), *dyh = nullptr;
        CUDA_OK(cudaMalloc(&dyh, yN * sizeof(__half)));
        s = cmc::adderConvForward(g, cmc::DType::kFloat16, dxh, dwa, epA, dyh, nullptr, 0, 0);
        CUDA_OK(cudaDeviceSynchronize());
        auto y = download(dyh, yN);
        std::vector<double> got(yN);
        for (size_t i = 0; i < yN; ++i) got[i] = __half2float(y[i]);
        const double e = relErr(want, got);
        expect(s == cmc::Status::kSuccess && e < 1e-2, "adderConvForward fp16 activations", e);
        // The rule exactly: the FP32 kernel on the widened inputs, rounded once, bit for bit (same tiles,
        // same float32 operations in the same order).
        float* dxr = upload(xr);
        const cmc::Status s32 = cmc::adderConvForward(g, cmc::DType::kFloat32, dxr, dwa, epA, dy, nullptr, 0, 0);
        CUDA_OK(cudaDeviceSynchronize());
        auto y32 = download(dy, yN);
        size_t mismatches = 0;
        for (size_t i = 0; i < yN; ++i)
            if (__half_as_ushort(__float2half(y32[i])) != __half_as_ushort(y[i])) ++mismatches;
        expect(s32 == cmc::Status::kSuccess && mismatches == 0, "fp16 I/O == round(fp32 kernel) bit for bit",
               double(mismatches));
        cudaFree(dxh); cudaFree(dyh); cudaFree(dxr);
    }
    // BinaryConv FP32 forward, binarized input and float input
    {
        const int nw = cmc::binaryWordsPerTap(cg);
        std::vector<int32_t> wp(size_t(g.m) * g.kh * g.kw * nw);
        cmc::binaryPackWeightsHost(g, w.data(), wp.data());
        int32_t* dwp = upload(wp);
        for (int bin = 0; bin < 2; ++bin) {
            std::vector<double> wantB(yN);
            const int mg = g.mPerGroup();
            for (int n = 0; n < g.n; ++n)
                for (int m = 0; m < g.m; ++m)
                    for (int i = 0; i < ho; ++i)
                        for (int j = 0; j < wo; ++j) {
                            double acc = 0;
                            for (int c = 0; c < cg; ++c)
                                for (int p = 0; p < g.kh; ++p)
                                    for (int q = 0; q < g.kw; ++q) {
                                        const int ih = i * g.strideH - g.padTop + p * g.dilationH;
                                        const int iw = j * g.strideW - g.padLeft + q * g.dilationW;
                                        if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                        const double xv = x[((size_t(n) * g.c + (m / mg) * cg + c) * g.h + ih) * g.w + iw];
                                        const double wv = w[((size_t(m) * cg + c) * g.kh + p) * g.kw + q] >= 0 ? 1.0 : -1.0;
                                        acc += (bin ? (xv >= 0 ? 1.0 : -1.0) : xv) * wv;
                                    }
                            wantB[((size_t(n) * g.m + m) * ho + i) * wo + j] = std::max(0.0, acc * scale[m] + shift[m]);
                        }
            const size_t wsBytes = cmc::binaryConvForwardWorkspaceSize(g, cmc::DType::kFloat32, bin != 0);
            void* ws = nullptr;
            CUDA_OK(cudaMalloc(&ws, std::max<size_t>(wsBytes, 1)));
            s = cmc::binaryConvForward(g, cmc::DType::kFloat32, bin != 0, dx, dwp, ep, dy, ws, wsBytes, 0);
            CUDA_OK(cudaDeviceSynchronize());
            auto y = download(dy, yN);
            std::vector<double> got(y.begin(), y.end());
            const double e = relErr(wantB, got);
            expect(s == cmc::Status::kSuccess && e < 1e-4, bin ? "binaryConvForward fp32 binarized" : "binaryConvForward fp32 float input", e);
            cudaFree(ws);
        }
        // device packing == host packing
        int32_t* dwp2 = nullptr;
        CUDA_OK(cudaMalloc(&dwp2, wp.size() * sizeof(int32_t)));
        s = cmc::binaryPackWeights(g, cmc::DType::kFloat32, dw, dwp2, 0);
        CUDA_OK(cudaDeviceSynchronize());
        auto wp2 = download(dwp2, wp.size());
        expect(s == cmc::Status::kSuccess && wp2 == wp, "binaryPackWeights == host packing", 0.0);
        cudaFree(dwp); cudaFree(dwp2);
    }
    // AdderConv backward (eta = 0: raw sums)
    {
        std::vector<float> gA(yN);
        for (auto& v : gA) v = uni(rng);
        float* dgA = upload(gA);
        float *dgx = nullptr, *dgw = nullptr;
        void* ws = nullptr;
        CUDA_OK(cudaMalloc(&dgx, xN * sizeof(float)));
        CUDA_OK(cudaMalloc(&dgw, wN * sizeof(float)));
        CUDA_OK(cudaMalloc(&ws, cmc::adderConvBackwardWorkspaceSize(g)));
        s = cmc::adderConvBackward(g, dxa, dwa, dgA, dgx, dgw, 0.0f, ws, cmc::adderConvBackwardWorkspaceSize(g), 0);
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<double> wantX(xN, 0.0), wantW(wN, 0.0);
        const int mg = g.mPerGroup();
        for (int n = 0; n < g.n; ++n)
            for (int m = 0; m < g.m; ++m)
                for (int i = 0; i < ho; ++i)
                    for (int j = 0; j < wo; ++j) {
                        const double ga = gA[((size_t(n) * g.m + m) * ho + i) * wo + j];
                        for (int c = 0; c < cg; ++c)
                            for (int p = 0; p < g.kh; ++p)
                                for (int q = 0; q < g.kw; ++q) {
                                    const int ih = i * g.strideH - g.padTop + p * g.dilationH;
                                    const int iw = j * g.strideW - g.padLeft + q * g.dilationW;
                                    const bool in = ih >= 0 && ih < g.h && iw >= 0 && iw < g.w;
                                    const size_t xi = ((size_t(n) * g.c + (m / mg) * cg + c) * g.h + ih) * g.w + iw;
                                    const size_t wi = ((size_t(m) * cg + c) * g.kh + p) * g.kw + q;
                                    const double xv = in ? ad.x[xi] : 0.0;
                                    wantW[wi] += (xv - ad.w[wi]) * ga;
                                    if (in) wantX[xi] += std::min(1.0, std::max(-1.0, double(ad.w[wi]) - xv)) * ga;
                                }
                    }
        auto gx = download(dgx, xN);
        auto gw = download(dgw, wN);
        const double ex = relErr(wantX, std::vector<double>(gx.begin(), gx.end()));
        const double ew = relErr(wantW, std::vector<double>(gw.begin(), gw.end()));
        expect(s == cmc::Status::kSuccess && ex < 1e-4, "adderConvBackward gradX", ex);
        expect(s == cmc::Status::kSuccess && ew < 1e-4, "adderConvBackward gradW", ew);
        cudaFree(dgA); cudaFree(dgx); cudaFree(dgw); cudaFree(ws);
    }
    // geometry errors are reported without touching memory
    {
        cmc::ConvGeometry bad = g;
        bad.groups = 4;
        expect(cmc::adderConvForward(bad, cmc::DType::kFloat32, dx, dw, ep, dy, nullptr, 0, 0) == cmc::Status::kInvalidArgument,
               "invalid geometry rejected", 0.0);
    }
    cudaFree(dx); cudaFree(dw); cudaFree(dscale); cudaFree(dshift); cudaFree(dy);
    testBinaryPreparedKernels();
    cudaFree(dxa); cudaFree(dwa); cudaFree(dscaleA); cudaFree(dshiftA);
    std::printf("cmc device tests: %d failed\n", gFailed);
    return gFailed == 0 ? 0 : 1;
}
