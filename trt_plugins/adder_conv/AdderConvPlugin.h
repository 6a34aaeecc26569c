// TensorRT IPluginV3 for com.cmc::AdderConv (plugin "AdderConv", version "1", namespace "cmc").
// The operator contract is plugins/adder_conv/contract.json; the field table comes from it through
// the generated header cmc_contract_adder_conv.h.
#pragma once

#include <string>

#include "cmc_contract_adder_conv.h"
#include "plugin_conv.h"

namespace cmc {
namespace plugin {

class AdderConvPlugin final : public ConvPluginBase {
public:
    using Contract = contract::AdderConv;

    static ContractInfo const& contractInfo() noexcept { return Contract::info(); }
    // Checks what the field parser cannot (nothing beyond ranges for AdderConv today); nullptr + why on error.
    static AdderConvPlugin* create(std::string layerName, FieldValues values, std::string& why);

    AdderConvPlugin(std::string layerName, FieldValues values, ConvParams params)
        : ConvPluginBase(Contract::info(), std::move(layerName), std::move(values), params) {}

protected:
    ConvPluginBase* cloneImpl() const override { return new AdderConvPlugin(*this); }
    // W is float32 whatever X is (FP16 = FP16 activations; the kernels compute in float32).
    bool weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType x) const noexcept override;
    void expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const override;
    char const* weightLayout() const noexcept override { return "[M, C/group, kh, kw]"; }
    size_t workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w) const override;
    Status launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w, void const* xPtr, void const* wPtr,
                  Epilogue const& ep, void* y, void* workspace, size_t workspaceBytes,
                  cudaStream_t stream) const override;
};

using AdderConvPluginCreator = ConvPluginCreator<AdderConvPlugin>;

}  // namespace plugin
}  // namespace cmc
