// One plugin lifecycle, in the order TensorRT's builder and runtime call a plugin (NvInferRuntime.h,
// IPluginV3 and its capabilities):
//   creator lookup by name/version/namespace -> createPlugin(kBUILD) with the fields the ONNX parser
//   passes (and every bad field: nullptr + error, no crash) -> getCapabilityInterface -> getNbOutputs /
//   getOutputDataTypes -> getOutputShapes (symbolic N, H, W) -> supportsFormatCombination over every
//   type/format (must equal the README's table) -> configurePlugin -> getWorkspaceSize ->
//   getFieldsToSerialize -> createPlugin(kRUNTIME) from those fields -> clone -> attachToContext ->
//   onShapeChange -> enqueue on the GPU (SKIPPED without one) -> destroy (every allocation made through
//   the context's allocator given back).
// The build-phase steps live in harness_lifecycle_build.cpp, the runtime ones in
// harness_lifecycle_runtime.cpp.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <NvInferRuntime.h>

#include "harness_enqueue.h"
#include "harness_fakes.h"
#include "harness_fields.h"
#include "harness_formats.h"
#include "harness_ops.h"
#include "plugin_test_stub.h"

namespace cmcharness {

// Where one library form's errors end up.
struct Sink {
    cmctest::CapturingLogger* logger = nullptr;
    FakeRecorder* recorder = nullptr;  // the registry's error recorder; none for the getCreators form
};

struct EnqueueStats {
    int32_t passed = 0;
    int32_t failed = 0;
};

struct LifecycleEnv {
    std::string form;                        // "dlopen" / "getCreators"
    nvinfer1::IPluginRegistry* registry = nullptr;
    Sink sink;
    GpuStatus gpu;
    bool enqueue = true;                     // false: --enqueue=off
    std::map<std::string, std::vector<FormatRow>> readmeRows;  // plugin name -> README format table
    EnqueueStats stats;
    std::map<std::string, HostTensors> tensorCache;
};

struct PluginDeleter {
    void operator()(nvinfer1::IPluginV3* p) const { delete p; }
};
using PluginPtr = std::unique_ptr<nvinfer1::IPluginV3, PluginDeleter>;

nvinfer1::IPluginV3OneBuild* buildOf(nvinfer1::IPluginV3* p);
nvinfer1::IPluginV3OneRuntime* runtimeOf(nvinfer1::IPluginV3* p);
// The serialized fields of `p` as owned copies (what TensorRT writes into a plan).
RawFields serializedCopy(nvinfer1::IPluginV3* p);
std::vector<std::vector<int32_t>> int32Values(RawFields const& f);

class Lifecycle {
public:
    Lifecycle(LifecycleEnv& env, OpCase const& k) : mEnv(env), mCase(k) {}
    void run();  // every step; failures are counted by check()

private:
    // build phase (harness_lifecycle_build.cpp)
    bool lookup();
    bool createFromFields();
    void badFields();
    bool capabilities();
    void outputTypes();
    void outputShapes();
    void formats();
    void configure();
    void workspace();
    bool serialize();
    // runtime phase (harness_lifecycle_runtime.cpp)
    bool deserialize();
    bool cloneAndAttach();
    void shapeChange();
    void enqueue();

    // helpers
    std::vector<nvinfer1::DynamicPluginTensorDesc> profileDescs(FormatRow const& row) const;
    bool reported(size_t logBefore, size_t recBefore, std::string const& needle) const;
    size_t logSize() const { return mEnv.sink.logger->messages.size(); }
    size_t recSize() const { return mEnv.sink.recorder != nullptr ? mEnv.sink.recorder->size() : 0; }

    LifecycleEnv& mEnv;
    OpCase const& mCase;
    nvinfer1::IPluginCreatorV3One* mCreator = nullptr;
    PluginPtr mBuild;      // createPlugin(kBUILD)
    std::vector<FormatRow> mAccepted;
    std::map<FormatRow, size_t> mWorkspace;  // getWorkspaceSize per accepted row
    RawFields mSerialized;  // the plan's copy of getFieldsToSerialize
    PluginPtr mRuntime;    // createPlugin(kRUNTIME)
    PluginPtr mClone;      // clone of mRuntime
    FakeRecorder mContextRecorder;
    FakeGpuAllocator mContextAllocator;  // outlives the plugins that use it (declared before them)
    std::unique_ptr<FakeResourceContext> mContext;
    PluginPtr mAttached;   // attachToContext of mClone
    bool mEnqueued = false;  // enqueue ran on a GPU
};

}  // namespace cmcharness
