#include "harness_fakes.h"

#include <cuda_runtime_api.h>

#include <limits>
#include <sstream>

namespace cmcharness {

using nvinfer1::DimensionOperation;
using nvinfer1::IDimensionExpr;

// One node of an expression: a constant, a named symbol or an operation on two nodes.
class SymExprImpl final : public nvinfer1::apiv::VDimensionExpr {
public:
    enum class Kind { kConstant, kSymbol, kOperation };
    Kind kind = Kind::kConstant;
    int64_t value = 0;
    std::string name;
    DimensionOperation op = DimensionOperation::kSUM;
    SymExpr const* a = nullptr;
    SymExpr const* b = nullptr;

    bool isConstant() const override { return kind == Kind::kConstant; }
    int64_t getConstantValue() const override {
        return kind == Kind::kConstant ? value : std::numeric_limits<int64_t>::min();
    }
    bool isSizeTensor() const override { return false; }
};

SymExpr::SymExpr(std::unique_ptr<SymExprImpl> impl) : mSym(std::move(impl)) { mImpl = mSym.get(); }
SymExpr::~SymExpr() noexcept = default;

namespace {

int64_t floorDiv(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) {
        --q;
    }
    return q;
}

// false for a division by zero.
bool apply(DimensionOperation op, int64_t x, int64_t y, int64_t& v) {
    switch (op) {
    case DimensionOperation::kSUM: v = x + y; return true;
    case DimensionOperation::kPROD: v = x * y; return true;
    case DimensionOperation::kMAX: v = x > y ? x : y; return true;
    case DimensionOperation::kMIN: v = x < y ? x : y; return true;
    case DimensionOperation::kSUB: v = x - y; return true;
    case DimensionOperation::kEQUAL: v = x == y; return true;
    case DimensionOperation::kLESS: v = x < y; return true;
    case DimensionOperation::kFLOOR_DIV:
        if (y == 0) return false;
        v = floorDiv(x, y);
        return true;
    case DimensionOperation::kCEIL_DIV:
        if (y == 0) return false;
        v = -floorDiv(-x, y);
        return true;
    }
    return false;
}

char const* opText(DimensionOperation op) {
    switch (op) {
    case DimensionOperation::kSUM: return "+";
    case DimensionOperation::kPROD: return "*";
    case DimensionOperation::kMAX: return "max";
    case DimensionOperation::kMIN: return "min";
    case DimensionOperation::kSUB: return "-";
    case DimensionOperation::kEQUAL: return "==";
    case DimensionOperation::kLESS: return "<";
    case DimensionOperation::kFLOOR_DIV: return "floordiv";
    case DimensionOperation::kCEIL_DIV: return "ceildiv";
    }
    return "?";
}

}  // namespace

class SymBuilderImpl final : public nvinfer1::apiv::VExprBuilder {
public:
    std::deque<std::unique_ptr<SymExpr>> nodes;
    bool fail = false;
    int32_t sizeTensors = 0;

    SymExpr const* make(std::unique_ptr<SymExprImpl> impl) {
        nodes.emplace_back(new SymExpr(std::move(impl)));
        return nodes.back().get();
    }
    SymExpr const* own(IDimensionExpr const& e) const {
        for (auto const& n : nodes) {
            if (n.get() == &e) {
                return n.get();
            }
        }
        return nullptr;
    }
    IDimensionExpr const* constant(int64_t value) override {
        if (fail) {
            return nullptr;
        }
        auto impl = std::make_unique<SymExprImpl>();
        impl->value = value;
        return make(std::move(impl));
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& first,
                                    IDimensionExpr const& second) override {
        SymExpr const* a = own(first);
        SymExpr const* b = own(second);
        if (fail || a == nullptr || b == nullptr) {
            return nullptr;  // also for expressions this builder did not make
        }
        auto impl = std::make_unique<SymExprImpl>();
        if (a->isConstant() && b->isConstant()) {
            // TensorRT folds operations on build-time constants into a constant.
            int64_t v = 0;
            if (!apply(op, a->getConstantValue(), b->getConstantValue(), v)) {
                return nullptr;
            }
            impl->value = v;
            return make(std::move(impl));
        }
        impl->kind = SymExprImpl::Kind::kOperation;
        impl->op = op;
        impl->a = a;
        impl->b = b;
        return make(std::move(impl));
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        ++sizeTensors;
        return nullptr;
    }
};

SymExprBuilder::SymExprBuilder() : mBuilder(std::make_unique<SymBuilderImpl>()) { mImpl = mBuilder.get(); }
SymExprBuilder::~SymExprBuilder() noexcept = default;

IDimensionExpr const* SymExprBuilder::symbol(std::string const& name) {
    auto impl = std::make_unique<SymExprImpl>();
    impl->kind = SymExprImpl::Kind::kSymbol;
    impl->name = name;
    return mBuilder->make(std::move(impl));
}

IDimensionExpr const* SymExprBuilder::literal(int64_t value) {
    bool const was = mBuilder->fail;
    mBuilder->fail = false;
    IDimensionExpr const* e = mBuilder->constant(value);
    mBuilder->fail = was;
    return e;
}

void SymExprBuilder::failFromNow(bool fail) { mBuilder->fail = fail; }
int32_t SymExprBuilder::nbSizeTensorDeclarations() const { return mBuilder->sizeTensors; }
bool SymExprBuilder::ownsExpression(IDimensionExpr const* e) const {
    return e != nullptr && mBuilder->own(*e) != nullptr;
}

bool evaluate(IDimensionExpr const* e, Binding const& b, int64_t& value, std::string& why) {
    if (e == nullptr) {
        why = "null expression";
        return false;
    }
    SymExprImpl const& n = static_cast<SymExpr const*>(e)->impl();
    switch (n.kind) {
    case SymExprImpl::Kind::kConstant: value = n.value; return true;
    case SymExprImpl::Kind::kSymbol: {
        auto it = b.find(n.name);
        if (it == b.end()) {
            why = "symbol " + n.name + " unbound";
            return false;
        }
        value = it->second;
        return true;
    }
    case SymExprImpl::Kind::kOperation: {
        int64_t x = 0, y = 0;
        if (!evaluate(n.a, b, x, why) || !evaluate(n.b, b, y, why)) {
            return false;
        }
        if (!apply(n.op, x, y, value)) {
            why = "division by zero";
            return false;
        }
        return true;
    }
    }
    return false;
}

std::string describe(IDimensionExpr const* e) {
    if (e == nullptr) {
        return "null";
    }
    SymExprImpl const& n = static_cast<SymExpr const*>(e)->impl();
    switch (n.kind) {
    case SymExprImpl::Kind::kConstant: return std::to_string(n.value);
    case SymExprImpl::Kind::kSymbol: return n.name;
    case SymExprImpl::Kind::kOperation: break;
    }
    std::string const t = opText(n.op);
    if (t.size() > 2) {
        return t + "(" + describe(n.a) + ", " + describe(n.b) + ")";
    }
    return "(" + describe(n.a) + " " + t + " " + describe(n.b) + ")";
}

nvinfer1::ErrorCode FakeRecorder::getErrorCode(int32_t i) const noexcept {
    return i >= 0 && static_cast<size_t>(i) < mErrors.size() ? mErrors[static_cast<size_t>(i)].first
                                                              : nvinfer1::ErrorCode::kINVALID_ARGUMENT;
}

nvinfer1::IErrorRecorder::ErrorDesc FakeRecorder::getErrorDesc(int32_t i) const noexcept {
    return i >= 0 && static_cast<size_t>(i) < mErrors.size() ? mErrors[static_cast<size_t>(i)].second.c_str() : "";
}

bool FakeRecorder::reportError(nvinfer1::ErrorCode code, ErrorDesc desc) noexcept {
    try {
        std::string const text = desc != nullptr ? desc : "";
        if (text.size() > kMAX_DESC_LENGTH) {
            ++tooLong;
        }
        mErrors.emplace_back(code, text);
    } catch (...) {
    }
    return true;
}

bool FakeRecorder::errorSince(size_t since, std::string const& needle) const {
    for (size_t i = since; i < mErrors.size(); ++i) {
        if (mErrors[i].second.find(needle) != std::string::npos) {
            return true;
        }
    }
    return false;
}

// ---- FakeGpuAllocator ----------------------------------------------------------------------------

void* FakeGpuAllocator::allocate(uint64_t size, uint64_t alignment, nvinfer1::AllocatorFlags /*flags*/) noexcept {
    std::lock_guard<std::mutex> lock(mMutex);
    // TensorRT's rules: size 0 gives nullptr; alignment 0 or a power of two up to cudaMalloc's 256.
    if (size == 0 || alignment > 256 || (alignment & (alignment - 1)) != 0) {
        ++mBadRequests;
        return nullptr;
    }
    void* p = nullptr;
    if (cudaMalloc(&p, size) != cudaSuccess) {
        cudaGetLastError();
        return nullptr;
    }
    mLive.insert(p);
    ++mAllocations;
    return p;
}

bool FakeGpuAllocator::deallocate(void* memory) noexcept {
    std::lock_guard<std::mutex> lock(mMutex);
    if (memory == nullptr) return true;
    if (mLive.erase(memory) == 0) {
        ++mBadReleases;
        return false;
    }
    return cudaFree(memory) == cudaSuccess;
}

void* FakeGpuAllocator::allocateAsync(uint64_t size, uint64_t alignment, nvinfer1::AllocatorFlags flags,
                                      cudaStream_t /*stream*/) noexcept {
    return allocate(size, alignment, flags);  // synchronous, which the interface allows
}

bool FakeGpuAllocator::deallocateAsync(void* memory, cudaStream_t /*stream*/) noexcept {
    return deallocate(memory);  // cudaFree waits for the device: never frees memory still in use
}

int32_t FakeGpuAllocator::allocations() const {
    std::lock_guard<std::mutex> lock(mMutex);
    return mAllocations;
}

size_t FakeGpuAllocator::outstanding() const {
    std::lock_guard<std::mutex> lock(mMutex);
    return mLive.size();
}

int32_t FakeGpuAllocator::badReleases() const {
    std::lock_guard<std::mutex> lock(mMutex);
    return mBadReleases;
}

int32_t FakeGpuAllocator::badRequests() const {
    std::lock_guard<std::mutex> lock(mMutex);
    return mBadRequests;
}

}  // namespace cmcharness
