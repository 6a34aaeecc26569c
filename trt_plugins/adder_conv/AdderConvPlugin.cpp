#include "AdderConvPlugin.h"

#include "plugin_cast.h"

namespace cmc {
namespace plugin {
namespace {

constexpr size_t kAlign = 256;

size_t alignUp(size_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

size_t elementSize(nvinfer1::DataType t) { return t == nvinfer1::DataType::kHALF ? 2 : 4; }

int64_t weightCount(ConvGeometry const& g) {
    return static_cast<int64_t>(g.m) * g.cPerGroup() * g.kh * g.kw;
}

}  // namespace

AdderConvPlugin* AdderConvPlugin::create(std::string layerName, FieldValues values, std::string& /*why*/) {
    ConvParams const p = commonConvParams<Contract>(values);
    return new AdderConvPlugin(std::move(layerName), std::move(values), p);
}

bool AdderConvPlugin::weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType /*x*/) const noexcept {
    return w == nvinfer1::DataType::kFLOAT || w == nvinfer1::DataType::kHALF;
}

void AdderConvPlugin::expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const {
    out[0] = m;
    out[1] = c >= 0 ? c / params().group : -1;
    out[2] = params().kh;
    out[3] = params().kw;
}

size_t AdderConvPlugin::workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w) const {
    DType const dt = x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
    size_t const kernel = adderConvForwardWorkspaceSize(g, dt);
    if (w == x) {
        return kernel;
    }
    return alignUp(static_cast<size_t>(weightCount(g)) * elementSize(x)) + kernel;
}

Status AdderConvPlugin::launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w, void const* xPtr,
                               void const* wPtr, Epilogue const& ep, void* y, void* workspace, size_t workspaceBytes,
                               cudaStream_t stream) const {
    DType const dt = x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
    void const* weights = wPtr;
    char* ws = static_cast<char*>(workspace);
    size_t wsLeft = workspaceBytes;
    if (w != x) {
        // The kernels take X and W in one dtype: convert W into the front of the workspace.
        size_t const castBytes = alignUp(static_cast<size_t>(weightCount(g)) * elementSize(x));
        if (ws == nullptr || wsLeft < castBytes) {
            return Status::kInvalidArgument;
        }
        cudaError_t const err = x == nvinfer1::DataType::kHALF
            ? castFloatToHalf(static_cast<float const*>(wPtr), ws, weightCount(g), stream)
            : castHalfToFloat(wPtr, reinterpret_cast<float*>(ws), weightCount(g), stream);
        if (err != cudaSuccess) {
            return Status::kCudaError;
        }
        weights = ws;
        ws += castBytes;
        wsLeft -= castBytes;
    }
    return adderConvForward(g, dt, xPtr, weights, ep, y, wsLeft > 0 ? ws : nullptr, wsLeft, stream);
}

}  // namespace plugin
}  // namespace cmc
