// PyTorch binding of the cmc CUDA kernels (trt_plugins/common/cmc_kernels.h): the same kernels the
// TensorRT plugins run, exposed as plain functions on CUDA tensors. Built on demand by
// cmc.plugins._cuda.loader with torch.utils.cpp_extension; the Python side (register.py) does the
// argument normalisation and falls back to the reference ops when this extension is unavailable.
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

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

cmc::ConvGeometry geometry(const at::Tensor& x, int64_t m, int64_t kh, int64_t kw, const std::vector<int64_t>& strides,
                           const std::vector<int64_t>& pads, const std::vector<int64_t>& dilations, int64_t group) {
    TORCH_CHECK(x.dim() == 4, "X must be 4-D NCHW, got ", x.sizes());
    TORCH_CHECK(strides.size() == 2 && dilations.size() == 2 && pads.size() == 4,
                "strides/dilations need 2 values and pads 4 (top, left, bottom, right)");
    cmc::ConvGeometry g;
    g.n = static_cast<int32_t>(x.size(0));
    g.c = static_cast<int32_t>(x.size(1));
    g.h = static_cast<int32_t>(x.size(2));
    g.w = static_cast<int32_t>(x.size(3));
    g.m = static_cast<int32_t>(m);
    g.kh = static_cast<int32_t>(kh);
    g.kw = static_cast<int32_t>(kw);
    g.strideH = static_cast<int32_t>(strides[0]);
    g.strideW = static_cast<int32_t>(strides[1]);
    g.padTop = static_cast<int32_t>(pads[0]);
    g.padLeft = static_cast<int32_t>(pads[1]);
    g.padBottom = static_cast<int32_t>(pads[2]);
    g.padRight = static_cast<int32_t>(pads[3]);
    g.dilationH = static_cast<int32_t>(dilations[0]);
    g.dilationW = static_cast<int32_t>(dilations[1]);
    g.groups = static_cast<int32_t>(group);
    checkStatus(g.validate(), "cmc: conv geometry");
    return g;
}

void checkCuda(const at::Tensor& t, const char* name, const at::Tensor& x) {
    TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
    TORCH_CHECK(t.device() == x.device(), name, " must be on the same device as X");
}

at::Tensor epilogueVec(const at::Tensor& v, int64_t m, const char* name, const at::Tensor& x) {
    checkCuda(v, name, x);
    TORCH_CHECK(v.numel() == m, name, " must have one value per output channel (", m, "), got ", v.numel());
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

at::Tensor binaryForward(const at::Tensor& xIn, const at::Tensor& wPackedIn, const at::Tensor& scaleIn,
                         const at::Tensor& shiftIn, std::vector<int64_t> strides, std::vector<int64_t> pads,
                         std::vector<int64_t> dilations, int64_t group, int64_t binarizeInput, int64_t activation) {
    checkCuda(xIn, "X", xIn);
    checkCuda(wPackedIn, "W_packed", xIn);
    const cmc::DType dt = dtypeOf(xIn);
    TORCH_CHECK(wPackedIn.scalar_type() == at::kInt && wPackedIn.dim() == 4, "W_packed must be int32 [M, kh, kw, words]");
    const at::Tensor x = xIn.contiguous();
    const at::Tensor wp = wPackedIn.contiguous();
    const cmc::ConvGeometry g = geometry(x, wp.size(0), wp.size(1), wp.size(2), strides, pads, dilations, group);
    TORCH_CHECK(wp.size(3) == cmc::binaryWordsPerTap(g.cPerGroup()), "W_packed holds ", wp.size(3), " words per tap; ",
                g.cPerGroup(), " channels per group need ", cmc::binaryWordsPerTap(g.cPerGroup()));
    const at::Tensor scale = epilogueVec(scaleIn, g.m, "scale", x), shift = epilogueVec(shiftIn, g.m, "shift", x);
    const c10::cuda::CUDAGuard guard(x.device());
    at::Tensor y = at::empty({g.n, g.m, g.outH(), g.outW()}, x.options());
    cmc::Epilogue ep{scale.data_ptr<float>(), shift.data_ptr<float>(), activation == 1};
    const size_t wsBytes = cmc::binaryConvForwardWorkspaceSize(g, dt, binarizeInput != 0);
    at::Tensor ws = at::empty({static_cast<int64_t>(wsBytes > 0 ? wsBytes : 1)}, x.options().dtype(at::kByte));
    checkStatus(cmc::binaryConvForward(g, dt, binarizeInput != 0, x.data_ptr(), wp.data_ptr<int32_t>(), ep,
                                       y.data_ptr(), ws.data_ptr(), wsBytes, c10::cuda::getCurrentCUDAStream().stream()),
                "cmc::binaryConvForward");
    return y;
}

// float/half [M, Cg, kh, kw] -> int32 [M, kh, kw, ceil(Cg/32)] (the contract's layout)
at::Tensor binaryPackWeights(const at::Tensor& wIn) {
    TORCH_CHECK(wIn.is_cuda() && wIn.dim() == 4, "W must be a 4-D CUDA tensor [M, Cg, kh, kw]");
    const cmc::DType dt = dtypeOf(wIn);
    const at::Tensor w = wIn.contiguous();
    cmc::ConvGeometry g;  // a 1 x Cg x kh x kw "input" with one valid output position
    g.n = 1;
    g.c = static_cast<int32_t>(w.size(1));
    g.h = static_cast<int32_t>(w.size(2));
    g.w = static_cast<int32_t>(w.size(3));
    g.m = static_cast<int32_t>(w.size(0));
    g.kh = g.h;
    g.kw = g.w;
    checkStatus(g.validate(), "cmc: weight shape");
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
}
