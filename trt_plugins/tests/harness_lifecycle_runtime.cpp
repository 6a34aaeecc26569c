// Serialization and the runtime-phase steps of the plugin lifecycle (see harness_lifecycle.h), and
// the order in which run() calls every step.
#include <array>
#include <cstdio>
#include <cstring>
#include <functional>

#include "harness_check.h"
#include "harness_lifecycle.h"

namespace cmcharness {

using namespace nvinfer1;
using cmc::plugin::ContractInfo;
using cmc::plugin::FieldSpec;

bool Lifecycle::serialize() {
    Context ctx("getFieldsToSerialize");
    ContractInfo const& c = *mCase.op->contract;
    mSerialized = serializedCopy(mBuild.get());
    if (!check(static_cast<int32_t>(mSerialized.list.size()) == c.nbFields, "one serialized field per contract field")) {
        return false;
    }
    for (int32_t i = 0; i < c.nbFields; ++i) {
        RawField const& f = mSerialized.list[static_cast<size_t>(i)];
        check(!f.nullName && f.name == c.fields[i].name && f.type == PluginFieldType::kINT32 && !f.nullData,
              std::string("serialized field ") + std::to_string(i) + " is int32 '" + c.fields[i].name + "'");
    }
    check(int32Values(mSerialized) == mCase.fieldValues, "serialized values are the node's");
    // TensorRT clones the build-phase plugin for its own copies.
    PluginPtr copy(mBuild->clone());
    check(copy != nullptr && int32Values(serializedCopy(copy.get())) == mCase.fieldValues, "clone keeps the fields");
    // The plan keeps only the copied fields: the build-phase objects are gone before deserialization.
    copy.reset();
    mBuild.reset();
    return true;
}

bool Lifecycle::deserialize() {
    Context ctx("createPlugin(kRUNTIME)");
    ContractInfo const& c = *mCase.op->contract;
    // Deserialization looks the creator up again, then creates from the plan's fields.
    IPluginCreatorInterface* found = mEnv.registry->getCreator(c.pluginName, c.pluginVersion, c.pluginNamespace);
    check(found == mCreator, "the registry returns the same creator");
    mRuntime.reset(mCreator->createPlugin(mCase.label.c_str(), mSerialized.collection(), TensorRTPhase::kRUNTIME));
    if (!check(mRuntime != nullptr, "createPlugin from the serialized fields")) {
        return false;
    }
    check(int32Values(serializedCopy(mRuntime.get())) == mCase.fieldValues, "round trip keeps every field");
    check(runtimeOf(mRuntime.get()) != nullptr, "runtime capability");
    return true;
}

bool Lifecycle::cloneAndAttach() {
    Context ctx("clone/attachToContext");
    mClone.reset(mRuntime->clone());
    if (!check(mClone != nullptr && mClone.get() != mRuntime.get(), "clone returns a new object")) {
        return false;
    }
    check(int32Values(serializedCopy(mClone.get())) == mCase.fieldValues, "clone keeps the fields");
    mContext = std::make_unique<FakeResourceContext>(&mContextRecorder, &mContextAllocator);
    mAttached.reset(runtimeOf(mClone.get())->attachToContext(mContext.get()));
    if (!check(mAttached != nullptr && mAttached.get() != mClone.get(), "attachToContext returns a new object")) {
        return false;
    }
    check(int32Values(serializedCopy(mAttached.get())) == mCase.fieldValues, "the attached plugin keeps the fields");
    // Errors of the attached plugin go to the context's recorder.
    PluginTensorDesc in[4]{}, out[1]{};
    for (auto& d : in) {
        d.dims.nbDims = 1;
        d.dims.d[0] = 1;
    }
    size_t const before = mContextRecorder.size();
    check(runtimeOf(mAttached.get())->onShapeChange(in, 4, out, 1) != 0, "onShapeChange refuses a rank-1 X");
    check(mContextRecorder.size() > before, "the error reaches the context's error recorder");
    check(mContextRecorder.tooLong == 0, "recorded descriptions fit kMAX_DESC_LENGTH");
    return true;
}

namespace {

PluginTensorDesc desc(IoFormat const& f, std::vector<int64_t> const& dims) {
    PluginTensorDesc d{};
    d.type = f.type;
    d.format = f.format;
    d.scale = 1.f;
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) d.dims.d[i] = dims[i];
    return d;
}

}  // namespace

void Lifecycle::shapeChange() {
    Context ctx("onShapeChange");
    OpModel const& op = *mCase.op;
    IPluginV3OneRuntime* rt = runtimeOf(mAttached.get());
    auto inputs = [&](FormatRow const& row, std::vector<int64_t> const& x, std::array<PluginTensorDesc, 4>& in) {
        in = {desc(row[0], x), desc(row[1], weightDims(mCase)), desc(row[2], {mCase.m}), desc(row[3], {mCase.m})};
    };
    std::array<PluginTensorDesc, 4> in{};
    for (auto const& row : mAccepted) {
        for (Dims4 const& x : mCase.runShapes) {
            inputs(row, xDims(op, x), in);
            PluginTensorDesc out[1] = {desc(row[4], yDims(op, outputDims(mCase, x)))};
            check(rt->onShapeChange(in.data(), 4, out, 1) == 0, "X " + dimsText(x) + " accepted");
        }
    }
    if (mAccepted.empty()) return;
    FormatRow const& row = mAccepted.front();
    Dims4 const x = mCase.opt;
    std::vector<int64_t> const yd = yDims(op, outputDims(mCase, x));
    // Each change alone must be refused, and reported to the context's recorder.
    auto refused = [&](std::string const& what, std::vector<int64_t> const& xd, std::vector<int64_t> const& yOut) {
        inputs(row, xd, in);
        PluginTensorDesc out[1] = {desc(row[4], yOut)};
        size_t const before = mContextRecorder.size();
        check(rt->onShapeChange(in.data(), 4, out, 1) != 0 && mContextRecorder.size() > before,
              what + " is refused and reported to the context's recorder");
    };
    std::vector<int64_t> wrongY = yd;
    wrongY[static_cast<size_t>(yHeightAxis(op))] += 1;
    refused("a wrong output height", xDims(op, x), wrongY);
    if (op.outputPacked) {
        wrongY = yd;
        wrongY[3] += 4;
        refused("a packed Y with the wrong word count", xDims(op, x), wrongY);
    }
    std::vector<int64_t> wrongX = xDims(op, x);
    if (op.inputPacked) {
        wrongX[3] += 4;  // no longer 4 * ceil(in_channels / 128)
        refused("a packed X with the wrong word count", wrongX, yd);
    } else {
        // C + 32*group: still divisible by the group, but W's C/group (or its words per tap) no longer match.
        wrongX[1] += 32 * mCase.attrs().group;
        refused("an X whose channels W does not match", wrongX, yd);
    }
}

void Lifecycle::enqueue() {
    Context ctx("enqueue");
    if (!mEnv.enqueue) {
        skip("enqueue not requested (--enqueue=off)");
        return;
    }
    OpModel const& op = *mCase.op;
    for (auto const& row : mAccepted) {
        std::string why;
        bool const known = canEncode(op, row, why);  // before `why` is read: argument order is unspecified
        check(known, why + " (teach harness_enqueue.cpp this combination)");
    }
    if (!mEnv.gpu.available) {
        skip("enqueue of " + std::to_string(mAccepted.size()) + " format combination(s) x " +
             std::to_string(mCase.runShapes.size()) + " shapes: " + mEnv.gpu.reason);
        return;
    }
    IPluginV3OneRuntime* rt = runtimeOf(mAttached.get());
    for (auto const& row : mAccepted) {
        std::string why;
        if (!canEncode(op, row, why)) continue;  // failed above
        DataType const yType = row[static_cast<size_t>(op.nbInputs)].type;
        double const tol = yType == DataType::kHALF ? op.tolFloat16 : op.tolFloat32;
        for (Dims4 const& x : mCase.runShapes) {
            std::string const key = mCase.label + dimsText(x) + typeName(row[0].type) + typeName(row[1].type);
            auto it = mEnv.tensorCache.find(key);
            if (it == mEnv.tensorCache.end()) {
                uint64_t const seed = std::hash<std::string>{}(key);
                it = mEnv.tensorCache.emplace(key, makeTensors(mCase, x, row[0].type, row[1].type, seed)).first;
            }
            EnqueueResult r;
            bool const ran = runEnqueue(*rt, mCase, row, it->second, mWorkspace[row], r, why);
            mEnqueued = mEnqueued || ran;
            std::string result;
            bool ok = false;
            if (!ran) {
                result = why;
            } else if (r.packedY) {
                // The signs must be the reference's exactly; only where the float sum of binarize_input 0 lands
                // within the contract tolerance of 0 may one differ (counted, not hidden).
                ok = r.bits > 0 && r.mismatches == 0 && r.padBitsSet == 0;
                result = std::to_string(r.mismatches) + " of " + std::to_string(r.bits) + " sign bits differ (" +
                         std::to_string(r.nearZero) + " more within " + std::to_string(it->second.signMargin) +
                         " of 0), " + std::to_string(r.padBitsSet) + " pad bits set";
            } else {
                ok = tol > 0 && r.relErr <= tol;
                result = "max|dy|/max|y| = " + std::to_string(r.relErr) + ", tolerance " + std::to_string(tol);
            }
            check(ok, rowText(row, op.ioNames) + " X " + dimsText(x) + ": " + result);
            ++(ok ? mEnv.stats.passed : mEnv.stats.failed);
            std::printf("  enqueue %s %s X %s: %s%s\n", op.pluginName.c_str(), rowText(row, op.ioNames).c_str(),
                        dimsText(x).c_str(), ran ? "" : "FAILED: ", (result + (ran ? (ok ? " ok" : " FAILED") : "")).c_str());
        }
    }
    if (mEnqueued && op.binaryWeights) {
        // The prepared weights live in memory from the execution context's allocator (attachToContext).
        check(mContextAllocator.allocations() > 0, "the prepared weights come from the context's IGpuAllocator");
    }
}

void Lifecycle::run() {
    Context ctx(mCase.label);
    std::printf("== %s: %s (%s)\n", mEnv.form.c_str(), mCase.op->pluginName.c_str(), mCase.label.c_str());
    if (!lookup() || !createFromFields()) return;
    badFields();
    if (!capabilities()) return;
    outputTypes();
    outputShapes();
    formats();
    configure();
    workspace();
    if (!serialize() || !deserialize() || !cloneAndAttach()) return;
    shapeChange();
    enqueue();
    // destroy: every object TensorRT would delete, in the order it would.
    mAttached.reset();
    mClone.reset();
    mRuntime.reset();
    mContext.reset();
    {
        Context ctx("destroy");
        check(mContextAllocator.outstanding() == 0,
              std::to_string(mContextAllocator.outstanding()) + " allocation(s) from the context's allocator not given back");
        check(mContextAllocator.badReleases() == 0 && mContextAllocator.badRequests() == 0,
              "the context's allocator saw only valid requests and releases of its own memory");
    }
}

}  // namespace cmcharness
