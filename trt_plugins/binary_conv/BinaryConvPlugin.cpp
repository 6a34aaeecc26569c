#include "BinaryConvPlugin.h"

#include <algorithm>

namespace cmc {
namespace plugin {

BinaryConvPlugin::~BinaryConvPlugin() { releasePrepared(); }

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

DType BinaryConvPlugin::kernelDType(nvinfer1::DataType x) const noexcept {
    // A packed X carries no float type: the epilogue (and a float Y) is float32 then.
    return !mIO.inputPacked && x == nvinfer1::DataType::kHALF ? DType::kFloat16 : DType::kFloat32;
}

size_t BinaryConvPlugin::workspaceSize(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType /*w*/) const {
    return binaryConvForwardExWorkspaceSize(g, kernelDType(x), params().binarizeInput, mIO);
}

void BinaryConvPlugin::attached(nvinfer1::IPluginResourceContext* context) noexcept {
    // TensorRT's allocator for this context (the user's, when they set one); cudaMalloc without one.
    mAllocator = context != nullptr ? context->getGpuAllocator() : nullptr;
}

void BinaryConvPlugin::releasePrepared() const noexcept {
    if (mPreparedEvent != nullptr) {
        cudaEventDestroy(mPreparedEvent);
        mPreparedEvent = nullptr;
    }
    if (mPrepared != nullptr) {
        if (mPreparedByAllocator && mAllocator != nullptr) {
            mAllocator->deallocateAsync(mPrepared, nullptr);
        } else {
            cudaFree(mPrepared);
        }
    }
    mPrepared = nullptr;
    mPreparedBytes = 0;
    mPreparedByAllocator = false;
    mPreparedFrom = nullptr;
    mPreparedStream = nullptr;
}

void const* BinaryConvPlugin::preparedWeights(ConvGeometry const& g, int32_t const* wPacked, cudaStream_t stream,
                                              std::string& why) const {
    std::lock_guard<std::mutex> lock(mPrepMutex);
    int32_t const key[5] = {g.m, g.c, g.groups, g.kh, g.kw};
    if (mPrepared != nullptr && mPreparedFrom == wPacked && std::equal(key, key + 5, mPreparedKey)) {
        // Prepared by an earlier enqueue, maybe on another stream: order this stream after it.
        if (stream != mPreparedStream && cudaStreamWaitEvent(stream, mPreparedEvent, 0) != cudaSuccess) {
            why = std::string("cudaStreamWaitEvent: ") + cudaGetErrorString(cudaGetLastError());
            return nullptr;
        }
        return mPrepared;
    }
    // Preparing allocates: not possible inside a CUDA graph capture (TensorRT's advice holds: run one
    // inference before capturing; the prepared weights are reused by the captured graph).
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &capture) != cudaSuccess) {
        why = std::string("cudaStreamIsCapturing: ") + cudaGetErrorString(cudaGetLastError());
        return nullptr;
    }
    if (capture != cudaStreamCaptureStatusNone) {
        why = "the weights are prepared at the first enqueue, which must not be captured into a CUDA graph: run "
              "one inference with this execution context before capturing";
        return nullptr;
    }
    size_t const bytes = binaryConvPreparedWeightsSize(g);
    if (bytes == 0) {
        why = "the kernels reject the layer geometry";
        return nullptr;
    }
    if (mPrepared != nullptr) {
        // Different weights or geometry than last time (not expected: constant weights keep their
        // address). Nothing may still read the old buffer when it is overwritten or freed.
        if (cudaDeviceSynchronize() != cudaSuccess) {
            why = std::string("cudaDeviceSynchronize: ") + cudaGetErrorString(cudaGetLastError());
            return nullptr;
        }
        if (bytes > mPreparedBytes) {
            releasePrepared();
        }
    }
    if (mPrepared == nullptr) {
        if (mAllocator != nullptr) {
            mPrepared = mAllocator->allocateAsync(bytes, 256, 0, stream);
            mPreparedByAllocator = true;
        } else if (cudaMalloc(&mPrepared, bytes) != cudaSuccess) {
            mPrepared = nullptr;
        }
        if (mPrepared == nullptr) {
            why = "could not allocate " + std::to_string(bytes) + " bytes of device memory for the prepared weights";
            mPreparedByAllocator = false;
            return nullptr;
        }
        mPreparedBytes = bytes;
    }
    if (mPreparedEvent == nullptr &&
        cudaEventCreateWithFlags(&mPreparedEvent, cudaEventDisableTiming) != cudaSuccess) {
        mPreparedEvent = nullptr;
        why = std::string("cudaEventCreate: ") + cudaGetErrorString(cudaGetLastError());
        return nullptr;
    }
    Status const st = binaryConvPrepareWeights(g, wPacked, mPrepared, stream);
    if (st != Status::kSuccess) {
        why = std::string("binaryConvPrepareWeights: ") + statusString(st);
        mPreparedFrom = nullptr;  // stale: prepare again next time
        return nullptr;
    }
    if (cudaEventRecord(mPreparedEvent, stream) != cudaSuccess) {
        why = std::string("cudaEventRecord: ") + cudaGetErrorString(cudaGetLastError());
        mPreparedFrom = nullptr;
        return nullptr;
    }
    mPreparedFrom = wPacked;
    std::copy(key, key + 5, mPreparedKey);
    mPreparedStream = stream;
    return mPrepared;
}

Status BinaryConvPlugin::launch(ConvGeometry const& g, nvinfer1::DataType x, nvinfer1::DataType /*w*/,
                                void const* xPtr, void const* wPtr, Epilogue const& ep, void* y, void* workspace,
                                size_t workspaceBytes, cudaStream_t stream) const {
    std::string why;
    void const* prepared = preparedWeights(g, static_cast<int32_t const*>(wPtr), stream, why);
    if (prepared == nullptr) {
        fail("enqueue: " + why);
        return Status::kInvalidArgument;
    }
    return binaryConvForwardEx(g, kernelDType(x), params().binarizeInput, mIO, xPtr, prepared, ep, y, workspace,
                               workspaceBytes, stream);
}

}  // namespace plugin
}  // namespace cmc
