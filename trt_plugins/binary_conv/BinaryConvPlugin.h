// TensorRT IPluginV3 for com.cmc::BinaryConv (plugin "BinaryConv", version "1", namespace "cmc").
// The operator contract is plugins/binary_conv/contract.json; the field table comes from it through
// the generated header cmc_contract_binary_conv.h.
#pragma once

#include <string>

#include "cmc_contract_binary_conv.h"
#include "plugin_conv.h"

namespace cmc {
namespace plugin {

class BinaryConvPlugin final : public ConvPluginBase {
public:
    using Contract = contract::BinaryConv;

    static ContractInfo const& contractInfo() noexcept { return Contract::info(); }
    static BinaryConvPlugin* create(std::string layerName, FieldValues values, std::string& why);

    BinaryConvPlugin(std::string layerName, FieldValues values, ConvParams params)
        : ConvPluginBase(Contract::info(), std::move(layerName), std::move(values), params) {}

protected:
    ConvPluginBase* cloneImpl() const override { return new BinaryConvPlugin(*this); }
    // W_packed is int32 (32 sign bits per word), whatever X is.
    bool weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType x) const noexcept override;
    void expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const override;
    char const* weightLayout() const noexcept override { return "[M, kh, kw, ceil((C/group)/32)]"; }
    size_t workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w) const override;
    Status launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w, void const* xPtr, void const* wPtr,
                  Epilogue const& ep, void* y, void* workspace, size_t workspaceBytes,
                  cudaStream_t stream) const override;
};

using BinaryConvPluginCreator = ConvPluginCreator<BinaryConvPlugin>;

}  // namespace plugin
}  // namespace cmc
