// PyTorch binding of the cmc CUDA kernels (trt_plugins/common/cmc_kernels.h): the same kernels the
// TensorRT plugins run, exposed as plain functions on CUDA tensors. Built on demand by
// cmc.plugins._cuda.loader with torch.utils.cpp_extension; the Python side (register.py) does the
// argument normalisation and falls back to the reference ops when this extension is unavailable.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "cmc_kernels.h"

namespace {

void checkStatus(cmc::Status s, const char* what) {
    if (s == cmc::Status::kCudaError) {
        const cudaError_t e = cudaGetLastError();
        TORCH_CHECK(false, what, ": ", cmc::statusString(s), ": ", cudaGetErrorString(e));
    }
    TORCH_CHECK(s == cmc::Status::kSuccess, what, ": ", cmc::statusString(s));
}

cmc::DType dtypeOf(const at::Tensor& t) {
    if (t.scalar_type() == at::kFloat) return cmc::DType::kFloat32;
    if (t.scalar_type() == at::kHalf) return cmc::DType::kFloat16;
    TORCH_CHECK(false, "cmc kernels take float32 or float16 tensors, got ", t.scalar_type());
}

// int64 (Python int) -> int32 with a range check, before any narrowing.
int32_t toI32(int64_t v, const char* what) {
    TORCH_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(), what, " = ", v,
                " does not fit in 32 bits");
    return static_cast<int32_t>(v);
}

// Geometry from explicit sizes; every attribute is range-checked with its own message, then the
// kernels' own validate() and size limits run, so nothing inconsistent reaches a launch.
cmc::ConvGeometry geometryOf(int64_t n, int64_t c, int64_t h, int64_t w, int64_t m, int64_t kh, int64_t kw,
                             const std::vector<int64_t>& strides, const std::vector<int64_t>& pads,
                             const std::vector<int64_t>& dilations, int64_t group) {
    TORCH_CHECK(strides.size() == 2, "strides need 2 values, got ", strides.size());
    TORCH_CHECK(dilations.size() == 2, "dilations need 2 values, got ", dilations.size());
    TORCH_CHECK(pads.size() == 4, "pads need 4 values (top, left, bottom, right), got ", pads.size());
    for (int64_t v : strides) TORCH_CHECK(v >= 1, "strides must be >= 1, got ", v);
    for (int64_t v : dilations) TORCH_CHECK(v >= 1, "dilations must be >= 1, got ", v);
    for (int64_t v : pads) TORCH_CHECK(v >= 0, "pads must be >= 0, got ", v);
    TORCH_CHECK(group >= 1, "group must be >= 1, got ", group);
    TORCH_CHECK(n >= 1 && c >= 1 && h >= 1 && w >= 1, "X must have a positive size in every dimension, got [", n, ", ",
                c, ", ", h, ", ", w, "]");
    TORCH_CHECK(m >= 1 && kh >= 1 && kw >= 1, "the weights must have M, kh, kw >= 1, got ", m, ", ", kh, ", ", kw);
    TORCH_CHECK(c % group == 0 && m % group == 0, c, " input / ", m, " output channels are not divisible by group=", group);
    cmc::ConvGeometry g;
    g.n = toI32(n, "N");
    g.c = toI32(c, "C");
    g.h = toI32(h, "H");
    g.w = toI32(w, "W");
    g.m = toI32(m, "M");
    g.kh = toI32(kh, "kh");
    g.kw = toI32(kw, "kw");
    g.strideH = toI32(strides[0], "stride");
    g.strideW = toI32(strides[1], "stride");
    g.padTop = toI32(pads[0], "pad");
    g.padLeft = toI32(pads[1], "pad");
    g.padBottom = toI32(pads[2], "pad");
    g.padRight = toI32(pads[3], "pad");
    g.dilationH = toI32(dilations[0], "dilation");
    g.dilationW = toI32(dilations[1], "dilation");
    g.groups = toI32(group, "group");
    TORCH_CHECK(g.validate() == cmc::Status::kSuccess, "cmc: inconsistent convolution geometry (the output would be "
                "empty: kernel ", kh, "x", kw, " with dilations ", dilations, " does not fit input ", h, "x", w,
                " with pads ", pads, ")");
    TORCH_CHECK(cmc::checkKernelLimits(g) == cmc::Status::kSuccess,
                "cmc: a tensor of this convolution has 2^31 or more elements (the kernels index with 32 bits)");
    return g;
}

cmc::ConvGeometry geometry(const at::Tensor& x, int64_t m, int64_t kh, int64_t kw, const std::vector<int64_t>& strides,
                           const std::vector<int64_t>& pads, const std::vector<int64_t>& dilations, int64_t group) {
    TORCH_CHECK(x.dim() == 4, "X must be 4-D NCHW, got ", x.sizes());
    return geometryOf(x.size(0), x.size(1), x.size(2), x.size(3), m, kh, kw, strides, pads, dilations, group);
}

void checkCuda(const at::Tensor& t, const char* name, const at::Tensor& x) {
    TORCH_CHECK(t.defined(), name, " is missing (an undefined tensor)");
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor, got one on ", t.device());
    TORCH_CHECK(t.device() == x.device(), name, " must be on the same device as X");
}

at::Tensor epilogueVec(const at::Tensor& v, int64_t m, const char* name, const at::Tensor& x) {
    checkCuda(v, name, x);
    TORCH_CHECK(v.is_floating_point(), name, " must be a floating-point tensor, got ", v.scalar_type());
    TORCH_CHECK(v.dim() == 1 && v.numel() == m, name, " must be 1-D with one value per output channel (", m,
                "), got shape ", v.sizes());
    return v.to(at::kFloat).contiguous();
}

at::Tensor adderForward(const at::Tensor& xIn, const at::Tensor& wIn, const at::Tensor& scaleIn,
                        const at::Tensor& shiftIn, std::vector<int64_t> strides, std::vector<int64_t> pads,
                        std::vector<int64_t> dilations, int64_t group, int64_t activation) {
    checkCuda(xIn, "X", xIn);
    checkCuda(wIn, "W", xIn);
    const cmc::DType dt = dtypeOf(xIn);
    TORCH_CHECK(wIn.dim() == 4, "W must be [M, C/group, kh, kw]");
    // The contract's precision rule: float32 W with float32 and float16 X alike (never rounded to half).
    TORCH_CHECK(wIn.scalar_type() == at::kFloat, "AdderConv: W must be float32, got ", wIn.scalar_type());
    const at::Tensor x = xIn.contiguous();
    const at::Tensor w = wIn.contiguous();
    const cmc::ConvGeometry g = geometry(x, w.size(0), w.size(2), w.size(3), strides, pads, dilations, group);
    TORCH_CHECK(w.size(1) == g.cPerGroup(), "W has ", w.size(1), " input channels per group, X/group ", g.cPerGroup());
    const at::Tensor scale = epilogueVec(scaleIn, g.m, "scale", x), shift = epilogueVec(shiftIn, g.m, "shift", x);
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({g.n, g.m, g.outH(), g.outW()}, x.options());
    cmc::Epilogue ep{scale.data_ptr<float>(), shift.data_ptr<float>(), activation == 1};
    const size_t wsBytes = cmc::adderConvForwardWorkspaceSize(g, dt);
    at::Tensor ws = at::empty({static_cast<int64_t>(wsBytes > 0 ? wsBytes : 1)}, x.options().dtype(at::kByte));
    checkStatus(cmc::adderConvForward(g, dt, x.data_ptr(), w.data_ptr<float>(), ep, y.data_ptr(), ws.data_ptr(), wsBytes,
                                      c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::adderConvForward");
    return y;
}

// Returns [gradX or undefined, gradW or undefined] in float32. The kernels compute in float32: X may be
// float32 or float16 (widened exactly), W and gradA must be float32. float64 is refused, not narrowed:
// silently narrowing it is how float64 training on CUDA once lost precision (the op keeps float64 in
// its own float64 code).
std::vector<at::Tensor> adderBackward(const at::Tensor& xIn, const at::Tensor& wIn, const at::Tensor& gradAIn,
                                      std::vector<int64_t> strides, std::vector<int64_t> pads,
                                      std::vector<int64_t> dilations, int64_t group, double eta, bool needX,
                                      bool needW) {
    checkCuda(xIn, "X", xIn);
    checkCuda(wIn, "W", xIn);
    checkCuda(gradAIn, "gradA", xIn);
    dtypeOf(xIn);  // float32 or float16
    TORCH_CHECK(wIn.scalar_type() == at::kFloat && gradAIn.scalar_type() == at::kFloat,
                "AdderConv backward kernels take float32 W and gradA, got ", wIn.scalar_type(), " and ",
                gradAIn.scalar_type());
    const at::Tensor x = xIn.to(at::kFloat).contiguous();
    const at::Tensor w = wIn.to(at::kFloat).contiguous();
    const at::Tensor gradA = gradAIn.to(at::kFloat).contiguous();
    const cmc::ConvGeometry g = geometry(x, w.size(0), w.size(2), w.size(3), strides, pads, dilations, group);
    TORCH_CHECK(w.size(1) == g.cPerGroup(), "W has ", w.size(1), " input channels per group, X/group ", g.cPerGroup());
    TORCH_CHECK(gradA.dim() == 4 && gradA.size(0) == g.n && gradA.size(1) == g.m && gradA.size(2) == g.outH() &&
                    gradA.size(3) == g.outW(),
                "gradA has shape ", gradA.sizes(), ", the output is [", g.n, ", ", g.m, ", ", g.outH(), ", ", g.outW(), "]");
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor gx = needX ? at::empty_like(x) : at::Tensor();
    at::Tensor gw = needW ? at::empty_like(w) : at::Tensor();
    const size_t wsBytes = cmc::adderConvBackwardWorkspaceSize(g);
    at::Tensor ws = at::empty({static_cast<int64_t>(wsBytes)}, x.options().dtype(at::kByte));
    checkStatus(cmc::adderConvBackward(g, x.data_ptr<float>(), w.data_ptr<float>(), gradA.data_ptr<float>(),
                                       needX ? gx.data_ptr<float>() : nullptr, needW ? gw.data_ptr<float>() : nullptr,
                                       static_cast<float>(eta), ws.data_ptr(), wsBytes, c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::adderConvBackward");
    return {gx, gw};
}

void checkFlag(int64_t v, const char* name) { TORCH_CHECK(v == 0 || v == 1, name, " must be 0 or 1, got ", v); }

cmc::DType dtypeFromCode(int64_t code) {
    TORCH_CHECK(code == 0 || code == 1, "dtype code must be 0 (float32) or 1 (float16), got ", code);
    return code == 0 ? cmc::DType::kFloat32 : cmc::DType::kFloat16;
}

at::ScalarType scalarOf(cmc::DType dt) { return dt == cmc::DType::kFloat32 ? at::kFloat : at::kHalf; }

// Contract W_packed: int32 [M, kh, kw, ceil((C/group)/32)] on X's device.
at::Tensor checkedPackedWeights(const at::Tensor& wPackedIn, const at::Tensor& x) {
    checkCuda(wPackedIn, "W_packed", x);
    TORCH_CHECK(wPackedIn.scalar_type() == at::kInt, "W_packed must be int32, got ", wPackedIn.scalar_type());
    TORCH_CHECK(wPackedIn.dim() == 4, "W_packed must be 4-D [M, kh, kw, words], got shape ", wPackedIn.sizes());
    return wPackedIn.contiguous();
}

void checkWordsPerTap(const at::Tensor& wp, const cmc::ConvGeometry& g) {
    // the kernels read M*kh*kw*ceil(Cg/32) words: a different count would read past the tensor
    TORCH_CHECK(wp.size(3) == cmc::binaryWordsPerTap(g.cPerGroup()), "W_packed holds ", wp.size(3),
                " words per tap; ", g.cPerGroup(), " channels per group need ", cmc::binaryWordsPerTap(g.cPerGroup()));
}

at::Tensor workspaceFor(size_t bytes, const at::Tensor& x) {
    // fresh allocations are at least 256-byte aligned (the kernels need 16)
    return at::empty({static_cast<int64_t>(bytes > 0 ? bytes : 1)}, x.options().dtype(at::kByte));
}

at::Tensor binaryForward(const at::Tensor& xIn, const at::Tensor& wPackedIn, const at::Tensor& scaleIn,
                         const at::Tensor& shiftIn, std::vector<int64_t> strides, std::vector<int64_t> pads,
                         std::vector<int64_t> dilations, int64_t group, int64_t binarizeInput, int64_t activation) {
    checkCuda(xIn, "X", xIn);
    const cmc::DType dt = dtypeOf(xIn);
    checkFlag(binarizeInput, "binarize_input");
    checkFlag(activation, "activation");
    const at::Tensor wp = checkedPackedWeights(wPackedIn, xIn);
    const at::Tensor x = xIn.contiguous();
    const cmc::ConvGeometry g = geometry(x, wp.size(0), wp.size(1), wp.size(2), strides, pads, dilations, group);
    checkWordsPerTap(wp, g);
    const at::Tensor scale = epilogueVec(scaleIn, g.m, "scale", x), shift = epilogueVec(shiftIn, g.m, "shift", x);
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({g.n, g.m, g.outH(), g.outW()}, x.options());
    cmc::Epilogue ep{scale.data_ptr<float>(), shift.data_ptr<float>(), activation == 1};
    const size_t wsBytes = cmc::binaryConvForwardWorkspaceSize(g, dt, binarizeInput != 0);
    at::Tensor ws = workspaceFor(wsBytes, x);
    checkStatus(cmc::binaryConvForward(g, dt, binarizeInput != 0, x.data_ptr(), wp.data_ptr<int32_t>(), ep,
                                       y.data_ptr(), ws.data_ptr(), wsBytes, c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryConvForward");
    return y;
}

// ---- prepared weights: a PreparedWeights object = the C API's prepared bytes (a CUDA uint8 tensor,
// freshly allocated, so 256-byte aligned) + the weight geometry they were made for, which
// binary_forward_ex checks exactly (no device read needed).
struct PreparedWeights {
    at::Tensor bytes;
    int64_t c = 0, m = 0, kh = 0, kw = 0, group = 0;
};

cmc::ConvGeometry weightGeometry(int64_t c, int64_t m, int64_t kh, int64_t kw, int64_t group) {
    // only (c, m, kh, kw, group) matter for the prepared bytes: a 1 x c x kh x kw input
    return geometryOf(1, c, kh, kw, m, kh, kw, {1, 1}, {0, 0, 0, 0}, {1, 1}, group);
}

PreparedWeights binaryPrepareWeights(const at::Tensor& wPackedIn, int64_t c, int64_t group) {
    TORCH_CHECK(wPackedIn.defined() && wPackedIn.is_cuda(), "W_packed must be a CUDA tensor");
    const at::Tensor wp = checkedPackedWeights(wPackedIn, wPackedIn);
    const cmc::ConvGeometry g = weightGeometry(c, wp.size(0), wp.size(1), wp.size(2), group);
    checkWordsPerTap(wp, g);
    const size_t bytes = cmc::binaryConvPreparedWeightsSize(g);
    TORCH_CHECK(bytes > 0, "cmc: no prepared-weight layout for this geometry");
    const c10::cuda::CUDAGuard guard(wp.device());
    PreparedWeights out;
    out.bytes = at::empty({static_cast<int64_t>(bytes)}, wp.options().dtype(at::kByte));
    out.c = g.c;
    out.m = g.m;
    out.kh = g.kh;
    out.kw = g.kw;
    out.group = g.groups;
    checkStatus(cmc::binaryConvPrepareWeights(g, wp.data_ptr<int32_t>(), out.bytes.data_ptr(),
                                              c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryConvPrepareWeights");
    return out;
}

// x: NCHW float/half, or packed int32 [N, H, W, wordsPerPixel(c)] when input_packed. Returns Y
// [N, M, Ho, Wo] in dtype, or packed int32 [N, Ho, Wo, wordsPerPixel(M)] when output_packed.
// kernel: 0 auto, 1 popcount, 2 BMMA.
at::Tensor binaryForwardEx(const at::Tensor& xIn, const PreparedWeights& prepared, const at::Tensor& scaleIn,
                           const at::Tensor& shiftIn, int64_t c, int64_t m, int64_t kh, int64_t kw,
                           std::vector<int64_t> strides, std::vector<int64_t> pads, std::vector<int64_t> dilations,
                           int64_t group, int64_t binarizeInput, int64_t activation, bool inputPacked,
                           bool outputPacked, int64_t dtypeCode, int64_t kernel) {
    checkCuda(xIn, "X", xIn);
    checkFlag(binarizeInput, "binarize_input");
    checkFlag(activation, "activation");
    TORCH_CHECK(kernel >= 0 && kernel <= 2, "kernel must be 0 (auto), 1 (popcount) or 2 (BMMA), got ", kernel);
    const cmc::DType dt = dtypeFromCode(dtypeCode);
    TORCH_CHECK(!inputPacked || binarizeInput == 1, "a packed input needs binarize_input=1");
    TORCH_CHECK(!inputPacked || group == 1, "a packed input needs group=1, got group=", group);
    TORCH_CHECK(xIn.dim() == 4, "X must be 4-D, got shape ", xIn.sizes());
    int64_t n = xIn.size(0), h, w;
    if (inputPacked) {
        TORCH_CHECK(xIn.scalar_type() == at::kInt, "a packed X must be int32, got ", xIn.scalar_type());
        TORCH_CHECK(c >= 1 && c <= std::numeric_limits<int32_t>::max(), "C must be a positive int32, got ", c);
        TORCH_CHECK(xIn.size(3) == cmc::binaryPackedWordsPerPixel(static_cast<int32_t>(c)), "a packed X holds ",
                    xIn.size(3), " words per pixel; ", c, " channels need ",
                    cmc::binaryPackedWordsPerPixel(static_cast<int32_t>(c)));
        h = xIn.size(1);
        w = xIn.size(2);
    } else {
        TORCH_CHECK(xIn.scalar_type() == scalarOf(dt), "X must be ", scalarOf(dt), " (the dtype code), got ",
                    xIn.scalar_type());
        TORCH_CHECK(xIn.size(1) == c, "X has ", xIn.size(1), " channels, C = ", c);
        h = xIn.size(2);
        w = xIn.size(3);
    }
    const cmc::ConvGeometry g = geometryOf(n, c, h, w, m, kh, kw, strides, pads, dilations, group);
    // the prepared weights: made for exactly this weight geometry, on X's device
    TORCH_CHECK(prepared.c == g.c && prepared.m == g.m && prepared.kh == g.kh && prepared.kw == g.kw &&
                    prepared.group == g.groups,
                "the prepared weights were made for C=", prepared.c, " M=", prepared.m, " kernel ", prepared.kh, "x",
                prepared.kw, " group ", prepared.group, ", not for C=", g.c, " M=", g.m, " kernel ", g.kh, "x", g.kw,
                " group ", g.groups);
    checkCuda(prepared.bytes, "the prepared weights", xIn);
    TORCH_CHECK(prepared.bytes.scalar_type() == at::kByte && prepared.bytes.is_contiguous() &&
                    prepared.bytes.numel() == static_cast<int64_t>(cmc::binaryConvPreparedWeightsSize(g)) &&
                    reinterpret_cast<uintptr_t>(prepared.bytes.data_ptr()) % 16 == 0,
                "the prepared weights' bytes were altered (size, dtype or alignment)");
    const at::Tensor x = xIn.contiguous();
    const at::Tensor scale = epilogueVec(scaleIn, g.m, "scale", x), shift = epilogueVec(shiftIn, g.m, "shift", x);
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = outputPacked
        ? at::empty({g.n, g.outH(), g.outW(), cmc::binaryPackedWordsPerPixel(g.m)}, x.options().dtype(at::kInt))
        : at::empty({g.n, g.m, g.outH(), g.outW()}, x.options().dtype(scalarOf(dt)));
    cmc::Epilogue ep{scale.data_ptr<float>(), shift.data_ptr<float>(), activation == 1};
    const cmc::BinaryIO io{inputPacked, outputPacked};
    const size_t wsBytes = cmc::binaryConvForwardExWorkspaceSize(g, dt, binarizeInput != 0, io);
    at::Tensor ws = workspaceFor(wsBytes, x);
    checkStatus(cmc::binaryConvForwardWith(static_cast<cmc::BinaryKernel>(kernel), g, dt, binarizeInput != 0, io,
                                           x.data_ptr(), prepared.bytes.data_ptr(),
                                           ep, y.data_ptr(), ws.data_ptr(), wsBytes,
                                           c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryConvForwardWith");
    return y;
}

// float/half NCHW -> int32 [N, H, W, wordsPerPixel(C)]
at::Tensor binaryPackActivations(const at::Tensor& xIn) {
    checkCuda(xIn, "X", xIn);
    const cmc::DType dt = dtypeOf(xIn);
    TORCH_CHECK(xIn.dim() == 4, "X must be 4-D NCHW, got shape ", xIn.sizes());
    for (int64_t i = 0; i < 4; ++i) TORCH_CHECK(xIn.size(i) >= 1, "X must not be empty, got shape ", xIn.sizes());
    const at::Tensor x = xIn.contiguous();
    const int32_t n = toI32(x.size(0), "N"), c = toI32(x.size(1), "C"), h = toI32(x.size(2), "H"), w = toI32(x.size(3), "W");
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor out = at::empty({n, h, w, cmc::binaryPackedWordsPerPixel(c)}, x.options().dtype(at::kInt));
    checkStatus(cmc::binaryPackActivations(n, c, h, w, dt, x.data_ptr(), out.data_ptr<int32_t>(),
                                           c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryPackActivations");
    return out;
}

// int32 [N, H, W, wordsPerPixel(C)] -> +-1 [N, C, H, W] in the dtype code's type
at::Tensor binaryUnpackActivations(const at::Tensor& xpIn, int64_t c, int64_t dtypeCode) {
    checkCuda(xpIn, "X_packed", xpIn);
    const cmc::DType dt = dtypeFromCode(dtypeCode);
    TORCH_CHECK(xpIn.scalar_type() == at::kInt && xpIn.dim() == 4, "X_packed must be int32 [N, H, W, words], got ",
                xpIn.scalar_type(), " of shape ", xpIn.sizes());
    for (int64_t i = 0; i < 3; ++i) TORCH_CHECK(xpIn.size(i) >= 1, "X_packed must not be empty, got shape ", xpIn.sizes());
    const int32_t cc = toI32(c, "C");
    TORCH_CHECK(cc >= 1 && xpIn.size(3) == cmc::binaryPackedWordsPerPixel(cc), "X_packed holds ", xpIn.size(3),
                " words per pixel; C = ", c, " needs ", cmc::binaryPackedWordsPerPixel(cc > 0 ? cc : 0));
    const at::Tensor xp = xpIn.contiguous();
    const int32_t n = toI32(xp.size(0), "N"), h = toI32(xp.size(1), "H"), w = toI32(xp.size(2), "W");
    const c10::cuda::CUDAGuard guard(xp.device());
    at::Tensor out = at::empty({n, cc, h, w}, xp.options().dtype(scalarOf(dt)));
    checkStatus(cmc::binaryUnpackActivations(n, cc, h, w, dt, xp.data_ptr<int32_t>(), out.data_ptr(),
                                             c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryUnpackActivations");
    return out;
}

// The kernel binary_forward / binary_forward_ex (kernel 0) run on the current device: 1 popcount, 2 BMMA.
int64_t binaryKernelChoice(int64_t n, int64_t c, int64_t h, int64_t w, int64_t m, int64_t kh, int64_t kw,
                           std::vector<int64_t> strides, std::vector<int64_t> pads, std::vector<int64_t> dilations,
                           int64_t group, int64_t binarizeInput) {
    checkFlag(binarizeInput, "binarize_input");
    const cmc::ConvGeometry g = geometryOf(n, c, h, w, m, kh, kw, strides, pads, dilations, group);
    return static_cast<int64_t>(cmc::binaryConvKernelForCurrentDevice(g, binarizeInput != 0));
}

// Tuning: the BMMA tile shapes (names, by index) and forcing one for this thread (-1: the rule).
std::vector<std::string> binaryBmmaTiles() {
    std::vector<std::string> out;
    for (int32_t i = 0; i < cmc::binaryBmmaTileCount(); ++i) out.emplace_back(cmc::binaryBmmaTileName(i));
    return out;
}

void binaryBmmaForceTile(int64_t tile) {
    TORCH_CHECK(tile >= -1 && tile < cmc::binaryBmmaTileCount(), "tile must be -1 (the rule) or 0..",
                cmc::binaryBmmaTileCount() - 1, ", got ", tile);
    checkStatus(cmc::binaryBmmaForceTile(static_cast<int32_t>(tile)), "cmc::binaryBmmaForceTile");
}

// float/half [M, Cg, kh, kw] -> int32 [M, kh, kw, ceil(Cg/32)] (the contract's layout)
at::Tensor binaryPackWeights(const at::Tensor& wIn) {
    TORCH_CHECK(wIn.defined() && wIn.is_cuda(), "W must be a CUDA tensor");
    TORCH_CHECK(wIn.dim() == 4, "W must be 4-D [M, Cg, kh, kw], got shape ", wIn.sizes());
    const cmc::DType dt = dtypeOf(wIn);
    const at::Tensor w = wIn.contiguous();
    // a 1 x Cg x kh x kw "input" with one valid output position
    const cmc::ConvGeometry g = geometryOf(1, w.size(1), w.size(2), w.size(3), w.size(0), w.size(2), w.size(3), {1, 1},
                                           {0, 0, 0, 0}, {1, 1}, 1);
    const c10::cuda::CUDAGuard guard(w.device());
    at::Tensor out = at::empty({g.m, g.kh, g.kw, cmc::binaryWordsPerTap(g.c)}, w.options().dtype(at::kInt));
    checkStatus(cmc::binaryPackWeights(g, dt, w.data_ptr(), out.data_ptr<int32_t>(), c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryPackWeights");
    return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
    mod.doc() = "cmc CUDA kernels (AdderConv, BinaryConv) from trt_plugins/, for CUDA tensors";
    mod.def("adder_forward", &adderForward, "AdderConv forward with the fused epilogue (float32/float16 X, float32 W)");
    mod.def("adder_backward", &adderBackward, "AdderConv backward of the raw sum: [gradX, gradW] (float32)");
    mod.def("binary_forward", &binaryForward, "BinaryConv forward with the fused epilogue");
    mod.def("binary_pack_weights", &binaryPackWeights, "pack float weights into the contract's int32 layout");
    py::class_<PreparedWeights>(mod, "PreparedWeights", "BinaryConv weights prepared for every kernel (+ their geometry)")
        .def_readonly("bytes", &PreparedWeights::bytes)
        .def_readonly("c", &PreparedWeights::c)
        .def_readonly("m", &PreparedWeights::m)
        .def_readonly("kh", &PreparedWeights::kh)
        .def_readonly("kw", &PreparedWeights::kw)
        .def_readonly("group", &PreparedWeights::group);
    mod.def("binary_prepare_weights", &binaryPrepareWeights, "W_packed, C, group -> PreparedWeights");
    mod.def("binary_forward_ex", &binaryForwardEx,
            "BinaryConv forward with prepared weights, packed input/output and a named kernel (0 auto, 1 popcount, 2 BMMA)");
    mod.def("binary_pack_activations", &binaryPackActivations, "NCHW float/half -> packed int32 [N, H, W, 4*ceil(C/128)]");
    mod.def("binary_unpack_activations", &binaryUnpackActivations, "packed int32 -> NCHW +-1 (dtype code 0 fp32, 1 fp16)");
    mod.def("binary_bmma_tiles", &binaryBmmaTiles, "the BMMA kernel's tile shapes in this build, by index");
    mod.def("binary_bmma_force_tile", &binaryBmmaForceTile, "force a BMMA tile shape for this thread (-1: the rule)");
    mod.def("binary_kernel_choice", &binaryKernelChoice, "the kernel auto picks on the current device: 1 popcount, 2 BMMA");
}
