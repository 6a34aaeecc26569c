// TensorRT IPluginV3 for com.cmc::BinaryConv (plugin "BinaryConv", version "1", namespace "cmc") and its
// packed-activation variants BinaryConvPackedOut / BinaryConvPackedIn / BinaryConvPackedInOut (plugins of
// the same names: com.cmc version 2 ops). The operator contract is plugins/binary_conv/contract.json;
// the field tables come from it through the generated header cmc_contract_binary_conv.h (one struct per
// op type).
//
// Weights are prepared once per plugin clone (binaryConvPrepareWeights: the layout the kernels read),
// at its first enqueue, into device memory the clone owns (TensorRT's allocator from attachToContext
// when there is one). configurePlugin/onShapeChange cannot do it: they never see the weight data. Each
// execution context has its own clone (attachToContext), so no state is shared between contexts.
#pragma once

#include <cuda_runtime_api.h>

#include <mutex>
#include <string>

#include "cmc_contract_binary_conv.h"
#include "plugin_conv.h"

namespace cmc {
namespace plugin {

class BinaryConvPlugin final : public ConvPluginBase {
public:
    // Creates the plugin of contract struct C (contract::BinaryConv or one of its packed variants).
    template <class C>
    static BinaryConvPlugin* create(std::string layerName, FieldValues values, std::string& why);

    BinaryConvPlugin(ContractInfo const& contract, std::string layerName, FieldValues values, ConvParams params,
                     BinaryIO io, int32_t inChannels)
        : ConvPluginBase(contract, std::move(layerName), std::move(values), params), mIO(io),
          mInChannels(inChannels) {}
    // A copy (clone, attachToContext) shares the configuration, never the prepared weights.
    BinaryConvPlugin(BinaryConvPlugin const& other)
        : ConvPluginBase(other), mIO(other.mIO), mInChannels(other.mInChannels), mAllocator(other.mAllocator) {}
    ~BinaryConvPlugin() override;

    BinaryIO io() const noexcept { return mIO; }

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
    bool inputPacked() const noexcept override { return mIO.inputPacked; }
    bool outputPacked() const noexcept override { return mIO.outputPacked; }
    int32_t packedInputChannels() const noexcept override { return mInChannels; }
    void attached(nvinfer1::IPluginResourceContext* context) noexcept override;

private:
    // The dtype the kernels compute the epilogue in and round to: X's, or float32 when X is packed.
    DType kernelDType(nvinfer1::DataType x) const noexcept;
    // The prepared weights for (g, wPacked), preparing them on `stream` when missing or stale; nullptr
    // (with the reason in `why`) on failure.
    void const* preparedWeights(ConvGeometry const& g, int32_t const* wPacked, cudaStream_t stream,
                                std::string& why) const;
    void releasePrepared() const noexcept;

    BinaryIO mIO{};
    int32_t mInChannels = -1;  // C of a packed X (the in_channels field); -1 otherwise
    nvinfer1::IGpuAllocator* mAllocator = nullptr;

    // Per-clone prepared weights (mutable: enqueue is const in the base's launch interface).
    mutable std::mutex mPrepMutex;
    mutable void* mPrepared = nullptr;
    mutable size_t mPreparedBytes = 0;
    mutable bool mPreparedByAllocator = false;
    mutable int32_t const* mPreparedFrom = nullptr;  // the W_packed device pointer they were made from
    mutable int32_t mPreparedKey[5] = {0, 0, 0, 0, 0};  // m, c, groups, kh, kw
    mutable cudaEvent_t mPreparedEvent = nullptr;   // recorded after the preparation
    mutable cudaStream_t mPreparedStream = nullptr;
};

template <class C>
BinaryConvPlugin* BinaryConvPlugin::create(std::string layerName, FieldValues values, std::string& /*why*/) {
    ConvParams p = commonConvParams<C>(values);
    p.binarizeInput = values[C::binarize_input][0] == 1;
    BinaryIO io;
    io.inputPacked = C::kInputPacked;
    io.outputPacked = C::kOutputPacked;
    int32_t inChannels = -1;
    if constexpr (C::kInputPacked) {
        inChannels = values[C::in_channels][0];
    }
    return new BinaryConvPlugin(C::info(), std::move(layerName), std::move(values), p, io, inChannels);
}

// What ConvPluginCreator needs of one op type: its contract and how to create its plugin.
template <class C>
struct BinaryConvKind {
    static ContractInfo const& contractInfo() noexcept { return C::info(); }
    static BinaryConvPlugin* create(std::string layerName, FieldValues values, std::string& why) {
        return BinaryConvPlugin::create<C>(std::move(layerName), std::move(values), why);
    }
};

using BinaryConvPluginCreator = ConvPluginCreator<BinaryConvKind<contract::BinaryConv>>;
using BinaryConvPackedOutPluginCreator = ConvPluginCreator<BinaryConvKind<contract::BinaryConvPackedOut>>;
using BinaryConvPackedInPluginCreator = ConvPluginCreator<BinaryConvKind<contract::BinaryConvPackedIn>>;
using BinaryConvPackedInOutPluginCreator = ConvPluginCreator<BinaryConvKind<contract::BinaryConvPackedInOut>>;

}  // namespace plugin
}  // namespace cmc
