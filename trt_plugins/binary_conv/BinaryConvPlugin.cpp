#include "BinaryConvPlugin.h"

namespace cmc {
namespace plugin {

BinaryConvPlugin* BinaryConvPlugin::create(std::string layerName, FieldValues values, std::string& /*why*/) {
    ConvParams p = commonConvParams<Contract>(values);
    p.binarizeInput = values[Contract::binarize_input][0] == 1;
    return new BinaryConvPlugin(std::move(layerName), std::move(values), p);
}

bool BinaryConvPlugin::weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType /*x*/) const noexcept {
    return w == nvinfer1::DataType::kINT32;
}

void BinaryConvPlugin::expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const {
    out[0] = m;
    out[1] = params().kh;
    out[2] = params().kw;
    // Words per tap, as the contract packs them: ceil((C/group)/32).
    out[3] = c >= 0 ? (c / params().group + 31) / 32 : -1;
}

size_t BinaryConvPlugin::workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType /*w*/) const {
    DType const dt = x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
    return binaryConvForwardWorkspaceSize(g, dt, params().binarizeInput);
}

Status BinaryConvPlugin::launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType /*w*/,
                                void const* xPtr, void const* wPtr, Epilogue const& ep, void* y, void* workspace,
                                size_t workspaceBytes, cudaStream_t stream) const {
    DType const dt = x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
    return binaryConvForward(g, dt, params().binarizeInput, xPtr, static_cast<int32_t const*>(wPtr), ep, y, workspace,
                             workspaceBytes, stream);
}

}  // namespace plugin
}  // namespace cmc
