// The shared IPluginV3 implementation of cmc's convolution-shaped operators (AdderConv, BinaryConv).
//
// Inputs follow the contracts: X [N, C, H, W] (float32/float16), W (constant; layout per op),
// scale [M] and shift [M] (float32 constants); one output Y [N, M, Ho, Wo] of X's type. Weights arrive
// as constant input tensors, so the plugin holds only the attributes (the contract's fields) and
// serializes exactly those. Each op supplies the weight layout, the supported weight types and the
// kernel launch; everything else (field parsing, shape inference, format negotiation, validation and
// error reporting) lives here once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "cmc_kernels.h"
#include "plugin_fields.h"
#include "plugin_log.h"

namespace cmc {
namespace plugin {

// Input positions fixed by both contracts.
constexpr int32_t kInputX = 0;
constexpr int32_t kInputW = 1;
constexpr int32_t kInputScale = 2;
constexpr int32_t kInputShift = 3;
constexpr int32_t kNbConvInputs = 4;
constexpr int32_t kNbConvOutputs = 1;

struct ConvParams {
    int32_t kh = 1, kw = 1;
    int32_t strideH = 1, strideW = 1;
    int32_t padTop = 0, padLeft = 0, padBottom = 0, padRight = 0;
    int32_t dilationH = 1, dilationW = 1;
    int32_t group = 1;
    bool relu = false;
    bool binarizeInput = true;  // BinaryConv only
};

// The fields both convolution contracts share, read by their generated names (C is a generated
// cmc::plugin::contract::<Op> struct), so renaming one in contract.json breaks the build, not the
// plugin.
template <class C>
ConvParams commonConvParams(FieldValues const& v) {
    ConvParams p;
    p.kh = v[C::kernel_shape][0];
    p.kw = v[C::kernel_shape][1];
    p.strideH = v[C::strides][0];
    p.strideW = v[C::strides][1];
    p.padTop = v[C::pads][0];
    p.padLeft = v[C::pads][1];
    p.padBottom = v[C::pads][2];
    p.padRight = v[C::pads][3];
    p.dilationH = v[C::dilations][0];
    p.dilationW = v[C::dilations][1];
    p.group = v[C::group][0];
    p.relu = v[C::activation][0] == 1;
    return p;
}

char const* dataTypeName(nvinfer1::DataType t) noexcept;

// Dimensions as plain numbers; -1 where not known (yet). `x` is always the logical [N, C, H, W]; a
// packed X (BinaryConv's packed variants: int32 [N, H, W, words]) keeps its word count in `xWords`.
struct ConvShapes {
    int64_t x[4] = {-1, -1, -1, -1};
    int64_t w[4] = {-1, -1, -1, -1};
    int64_t scale = -1;
    int64_t shift = -1;
    int64_t xWords = -1;
};

class ConvPluginBase : public nvinfer1::IPluginV3,
                       public nvinfer1::IPluginV3OneCore,
                       public nvinfer1::IPluginV3OneBuild,
                       public nvinfer1::IPluginV3OneRuntime {
public:
    ConvPluginBase(ContractInfo const& contract, std::string layerName, FieldValues values, ConvParams params);
    ConvPluginBase(ConvPluginBase const&) = default;
    ConvPluginBase& operator=(ConvPluginBase const&) = delete;
    ~ConvPluginBase() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                               int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                            int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                          int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    // Introspection (tests, error messages).
    ContractInfo const& contract() const noexcept { return *mContract; }
    FieldValues const& fieldValues() const noexcept { return mValues; }
    ConvParams const& params() const noexcept { return mParams; }
    std::string const& layerName() const noexcept { return mLayerName; }

    // Checks the known dimensions of `s` against the fields and each other; false with the reason.
    bool checkShapes(ConvShapes const& s, std::string& why) const;

protected:
    // ---- what each operator supplies ----
    virtual ConvPluginBase* cloneImpl() const = 0;
    virtual bool weightTypeSupported(nvinfer1::DataType w, nvinfer1::DataType x) const noexcept = 0;
    // Expected W dims given X's channel count c (-1: unknown) and M (-1: unknown); -1 entries are not checked.
    virtual void expectedWeightDims(int64_t c, int64_t m, int64_t out[4]) const = 0;
    virtual char const* weightLayout() const noexcept = 0;  // for messages, e.g. "[M, C/group, kh, kw]"
    virtual size_t workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w) const = 0;
    virtual Status launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType w, void const* xPtr,
                          void const* wPtr, Epilogue const& ep, void* y, void* workspace, size_t workspaceBytes,
                          cudaStream_t stream) const = 0;

    // Packed 1-bit activations (BinaryConv's packed variants; the defaults are the unpacked contract):
    // a packed X is int32 [N, H, W, binaryPackedWordsPerPixel(C)] with C = packedInputChannels(), a
    // packed Y int32 [N, Ho, Wo, binaryPackedWordsPerPixel(M)]; a float Y of a packed X is float32.
    virtual bool inputPacked() const noexcept { return false; }
    virtual bool outputPacked() const noexcept { return false; }
    virtual int32_t packedInputChannels() const noexcept { return -1; }
    // Called on the copy attachToContext returns (per-context resources such as the GPU allocator).
    virtual void attached(nvinfer1::IPluginResourceContext* /*context*/) noexcept {}

    void fail(std::string const& what) const noexcept;
    ConvGeometry geometry(int64_t const x[4], int64_t const w[4]) const;
    // X's dims as given (packed or not) -> the logical [N, C, H, W] in `s` (+ s.xWords when packed).
    void logicalX(int64_t const given[4], ConvShapes& s) const;
    bool xTypeOk(nvinfer1::DataType t) const noexcept;
    nvinfer1::DataType outputType(nvinfer1::DataType x) const noexcept;
    bool shapesFromDims(nvinfer1::Dims const* dims, int32_t nbInputs, ConvShapes& s, std::string& why) const;

private:
    ContractInfo const* mContract;
    std::string mLayerName;
    FieldValues mValues;
    ConvParams mParams;
    nvinfer1::IErrorRecorder* mRecorder = nullptr;
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialFC{};
};

// The creator of one operator's plugin. PluginT (the plugin class, or a traits type naming it) provides
//   static ContractInfo const& contractInfo();
//   static P* create(std::string layerName, FieldValues values, std::string& why);  // nullptr + why on error
// where P derives from ConvPluginBase.
template <class PluginT>
class ConvPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    ConvPluginCreator() {
        ContractInfo const& c = PluginT::contractInfo();
        mFields.reserve(static_cast<size_t>(c.nbFields));
        for (int32_t i = 0; i < c.nbFields; ++i) {
            mFields.emplace_back(c.fields[i].name, nullptr, nvinfer1::PluginFieldType::kINT32, c.fields[i].length);
        }
        mFC.nbFields = static_cast<int32_t>(mFields.size());
        mFC.fields = mFields.data();
    }

    char const* getPluginName() const noexcept override { return PluginT::contractInfo().pluginName; }
    char const* getPluginVersion() const noexcept override { return PluginT::contractInfo().pluginVersion; }
    char const* getPluginNamespace() const noexcept override { return PluginT::contractInfo().pluginNamespace; }
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFC; }

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase /*phase*/) noexcept override {
        std::string const layer = name != nullptr ? name : "";
        try {
            FieldValues values;
            std::string why;
            if (!parseFields(PluginT::contractInfo(), fc, values, why)) {
                reportError("layer '" + layer + "': " + why);
                return nullptr;
            }
            auto* plugin = PluginT::create(layer, std::move(values), why);
            if (plugin == nullptr) {
                reportError("layer '" + layer + "': " + why);
                return nullptr;
            }
            return static_cast<nvinfer1::IPluginV3*>(plugin);
        } catch (std::exception const& e) {
            reportError("layer '" + layer + "': " + PluginT::contractInfo().pluginName + " createPlugin failed: " +
                            e.what(),
                        nullptr, nvinfer1::ErrorCode::kINTERNAL_ERROR);
        } catch (...) {
            reportError("layer '" + layer + "': " + PluginT::contractInfo().pluginName + " createPlugin failed",
                        nullptr, nvinfer1::ErrorCode::kINTERNAL_ERROR);
        }
        return nullptr;
    }

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFC{};
};

}  // namespace plugin
}  // namespace cmc
