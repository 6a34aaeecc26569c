#include "AdderConvPlugin.h"

namespace cmc {
namespace plugin {

AdderConvPlugin* AdderConvPlugin::create(std::string layerName, FieldValues values, std::string& /*why*/) {
    ConvParams const p = commonConvParams<Contract>(values);
    return new AdderConvPlugin(std::move(layerName), std::move(values), p);
}

bool AdderConvPlugin::weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType /*x*/) const noexcept {
    // The contract's precision rule: W is float32 with FP32 and with FP16 X/Y alike.
    return w == nvinfer1::DataType::kFLOAT;
}

void AdderConvPlugin::expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const {
    out[0] = m;
    out[1] = c >= 0 ? c / params().group : -1;
    out[2] = params().kh;
    out[3] = params().kw;
}

size_t AdderConvPlugin::workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType /*w*/) const {
    return adderConvForwardWorkspaceSize(g, x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32);
}

Status AdderConvPlugin::launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w, void const* xPtr,
                               void const* wPtr, Epilogue const& ep, void* y, void* workspace, size_t workspaceBytes,
                               cudaStream_t stream) const {
    if (w != nvinfer1::DataType::kFLOAT) {
        return Status::kInvalidArgument;  // supportsFormatCombination never offers it
    }
    DType const dt = x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
    return adderConvForward(g, dt, xPtr, static_cast<float const*>(wPtr), ep, y, workspaceBytes > 0 ? workspace : nullptr,
                            workspaceBytes, stream);
}

}  // namespace plugin
}  // namespace cmc
