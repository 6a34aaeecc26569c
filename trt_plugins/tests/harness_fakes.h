// Working stand-ins for the objects TensorRT hands to a plugin: a symbolic IExprBuilder /
// IDimensionExpr (named symbols such as N, H, W; constants folded the way TensorRT folds them;
// every expression can be evaluated for one binding of the symbols, e.g. the profile's min, opt or
// max), an IErrorRecorder, the IGpuAllocator and IPluginResourceContext of attachToContext and the
// ILoggerFinder that TensorRT gives a getCreators library.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <NvInferRuntime.h>

namespace cmcharness {

using Binding = std::map<std::string, int64_t>;  // symbol name -> value

class SymExprImpl;

class SymExpr final : public nvinfer1::IDimensionExpr {
public:
    explicit SymExpr(std::unique_ptr<SymExprImpl> impl);
    ~SymExpr() noexcept override;
    SymExprImpl const& impl() const { return *mSym; }

private:
    std::unique_ptr<SymExprImpl> mSym;
};

// Evaluates what the plugin built; false (with the reason) for an unbound symbol or a division by 0.
bool evaluate(nvinfer1::IDimensionExpr const* e, Binding const& b, int64_t& value, std::string& why);
// "floor((H + 0) / 2) + 1" style text of an expression built by a SymExprBuilder.
std::string describe(nvinfer1::IDimensionExpr const* e);

class SymBuilderImpl;

class SymExprBuilder final : public nvinfer1::IExprBuilder {
public:
    SymExprBuilder();
    ~SymExprBuilder() noexcept override;
    nvinfer1::IDimensionExpr const* symbol(std::string const& name);
    nvinfer1::IDimensionExpr const* literal(int64_t value);  // what constant() returns
    // From the next operation()/constant() call on, return nullptr (to test the plugin's handling).
    void failFromNow(bool fail);
    int32_t nbSizeTensorDeclarations() const;
    bool ownsExpression(nvinfer1::IDimensionExpr const* e) const;

private:
    std::unique_ptr<SymBuilderImpl> mBuilder;
};

class FakeRecorder final : public nvinfer1::IErrorRecorder {
public:
    int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(mErrors.size()); }
    nvinfer1::ErrorCode getErrorCode(int32_t i) const noexcept override;
    ErrorDesc getErrorDesc(int32_t i) const noexcept override;
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override { mErrors.clear(); }
    bool reportError(nvinfer1::ErrorCode code, ErrorDesc desc) noexcept override;
    RefCount incRefCount() noexcept override { return 1; }
    RefCount decRefCount() noexcept override { return 0; }
    // An error containing `needle` recorded at index >= `since`; every description must fit
    // kMAX_DESC_LENGTH (checked by reportError into `tooLong`).
    bool errorSince(size_t since, std::string const& needle) const;
    size_t size() const { return mErrors.size(); }
    int32_t tooLong = 0;

private:
    std::vector<std::pair<nvinfer1::ErrorCode, std::string>> mErrors;
};

// The execution context's allocator (what a user's IGpuAllocator or TensorRT's default gives a plugin
// through attachToContext): cudaMalloc/cudaFree, counting, so that the harness can tell whether a plugin
// allocated through it (BinaryConv's prepared weights) and gave everything back when it was destroyed.
class FakeGpuAllocator final : public nvinfer1::IGpuAllocator {
public:
    void* allocate(uint64_t size, uint64_t alignment, nvinfer1::AllocatorFlags flags) noexcept override;
    bool deallocate(void* memory) noexcept override;
    void* allocateAsync(uint64_t size, uint64_t alignment, nvinfer1::AllocatorFlags flags,
                        cudaStream_t stream) noexcept override;
    bool deallocateAsync(void* memory, cudaStream_t stream) noexcept override;

    int32_t allocations() const;   // successful allocations so far
    size_t outstanding() const;    // allocations not given back
    int32_t badReleases() const;   // deallocations of pointers this allocator did not hand out (or twice)
    int32_t badRequests() const;   // size 0 or an alignment that is not a power of two <= 256

private:
    mutable std::mutex mMutex;
    std::set<void*> mLive;
    int32_t mAllocations = 0, mBadReleases = 0, mBadRequests = 0;
};

class FakeResourceContext final : public nvinfer1::IPluginResourceContext {
public:
    FakeResourceContext(nvinfer1::IErrorRecorder* r, nvinfer1::IGpuAllocator* a) : mRecorder(r), mAllocator(a) {}
    ~FakeResourceContext() noexcept override = default;
    nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override { return mAllocator; }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override { return mRecorder; }

private:
    nvinfer1::IErrorRecorder* mRecorder;
    nvinfer1::IGpuAllocator* mAllocator;
};

class FakeLoggerFinder final : public nvinfer1::ILoggerFinder {
public:
    explicit FakeLoggerFinder(nvinfer1::ILogger* l) : mLogger(l) {}
    nvinfer1::ILogger* findLogger() override { return mLogger; }

private:
    nvinfer1::ILogger* mLogger;
};

}  // namespace cmcharness
