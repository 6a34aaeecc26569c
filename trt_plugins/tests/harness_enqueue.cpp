#include "harness_enqueue.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "harness_check.h"

namespace cmcharness {

using nvinfer1::DataType;

GpuStatus probeGpu() {
    GpuStatus s;
    int count = 0;
    cudaError_t const err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        s.reason = std::string("no usable CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(err) + ")";
        cudaGetLastError();
        return s;
    }
    if (count == 0) {
        s.reason = "no CUDA device";
        return s;
    }
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) {
        s.reason = "cudaGetDeviceProperties failed";
        return s;
    }
    s.available = true;
    s.device = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
    return s;
}

namespace {

constexpr size_t kGuard = 256;
constexpr unsigned char kGuardByte = 0xA5;

size_t elementBytes(DataType t) { return t == DataType::kHALF ? 2 : 4; }

// A device buffer with guard bytes before and after the payload.
class GuardedBuffer {
public:
    GuardedBuffer() = default;
    GuardedBuffer(GuardedBuffer const&) = delete;
    GuardedBuffer& operator=(GuardedBuffer const&) = delete;
    ~GuardedBuffer() {
        if (mBase != nullptr) cudaFree(mBase);
    }
    cudaError_t allocate(size_t bytes, unsigned char fill) {
        mBytes = bytes;
        cudaError_t err = cudaMalloc(reinterpret_cast<void**>(&mBase), bytes + 2 * kGuard);
        if (err != cudaSuccess) return err;
        err = cudaMemset(mBase, kGuardByte, kGuard);
        if (err == cudaSuccess) err = cudaMemset(mBase + kGuard, fill, bytes);
        if (err == cudaSuccess) err = cudaMemset(mBase + kGuard + bytes, kGuardByte, kGuard);
        return err;
    }
    cudaError_t upload(std::vector<unsigned char> const& host) {
        return cudaMemcpy(data(), host.data(), host.size(), cudaMemcpyHostToDevice);
    }
    cudaError_t fill(unsigned char value, cudaStream_t stream) {
        return cudaMemsetAsync(mBase + kGuard, value, mBytes, stream);
    }
    cudaError_t download(std::vector<unsigned char>& host) const {
        host.resize(mBytes);
        return cudaMemcpy(host.data(), mBase + kGuard, mBytes, cudaMemcpyDeviceToHost);
    }
    bool guardsIntact() const {
        std::vector<unsigned char> g(kGuard);
        for (size_t offset : {size_t(0), kGuard + mBytes}) {
            if (cudaMemcpy(g.data(), mBase + offset, kGuard, cudaMemcpyDeviceToHost) != cudaSuccess) return false;
            if (std::any_of(g.begin(), g.end(), [](unsigned char b) { return b != kGuardByte; })) return false;
        }
        return true;
    }
    void* data() const { return mBase + kGuard; }

private:
    unsigned char* mBase = nullptr;
    size_t mBytes = 0;
};

std::vector<unsigned char> encodeFloats(std::vector<double> const& v, DataType t) {
    std::vector<unsigned char> out(v.size() * elementBytes(t));
    for (size_t i = 0; i < v.size(); ++i) {
        if (t == DataType::kHALF) {
            uint16_t const b = halfBits(static_cast<float>(v[i]));
            std::memcpy(out.data() + 2 * i, &b, 2);
        } else {
            float const f = static_cast<float>(v[i]);
            std::memcpy(out.data() + 4 * i, &f, 4);
        }
    }
    return out;
}

std::vector<double> decodeFloats(std::vector<unsigned char> const& b, DataType t) {
    size_t const n = b.size() / elementBytes(t);
    std::vector<double> out(n);
    for (size_t i = 0; i < n; ++i) {
        if (t == DataType::kHALF) {
            uint16_t h = 0;
            std::memcpy(&h, b.data() + 2 * i, 2);
            out[i] = halfValue(h);
        } else {
            float f = 0;
            std::memcpy(&f, b.data() + 4 * i, 4);
            out[i] = f;
        }
    }
    return out;
}

bool isFloat(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF; }

nvinfer1::PluginTensorDesc tensorDesc(IoFormat const& f, std::vector<int64_t> const& dims) {
    nvinfer1::PluginTensorDesc d{};
    d.type = f.type;
    d.format = f.format;
    d.scale = 1.f;
    d.dims.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) d.dims.d[i] = dims[i];
    return d;
}

std::string cudaText(char const* what, cudaError_t e) { return std::string(what) + ": " + cudaGetErrorString(e); }

}  // namespace

bool canEncode(OpModel const& op, FormatRow const& row, std::string& why) {
    if (op.nbInputs != 4 || op.nbOutputs != 1 || row.size() != 5) {
        why = "the harness drives 4-input/1-output convolution operators only";
        return false;
    }
    for (size_t i = 0; i < row.size(); ++i) {
        if (row[i].format != nvinfer1::TensorFormat::kLINEAR) {
            why = op.ioNames[i] + " in " + formatName(row[i].format) + ": the harness lays out linear tensors only";
            return false;
        }
    }
    // Packed activations are int32 words the harness packs (X) and unpacks bit by bit (Y).
    bool const xOk = op.inputPacked ? row[0].type == DataType::kINT32 : isFloat(row[0].type);
    bool const yOk = op.outputPacked ? row[4].type == DataType::kINT32 : isFloat(row[4].type);
    bool const ok = xOk && (op.binaryWeights ? row[1].type == DataType::kINT32 : isFloat(row[1].type)) &&
                    row[2].type == DataType::kFLOAT && row[3].type == DataType::kFLOAT && yOk;
    if (!ok) {
        why = "no harness data model for " + rowText(row, op.ioNames);
    }
    return ok;
}

namespace {

template <class T>
std::vector<unsigned char> bytesOf(std::vector<T> const& v) {
    std::vector<unsigned char> out(v.size() * sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), v.data(), out.size());
    return out;
}

// Packed Y [N, Ho, Wo, words(M)] against the reference bits, value bit by value bit.
void comparePacked(std::vector<unsigned char> const& got, HostTensors const& t, EnqueueResult& r) {
    int64_t const words = packedWords(t.y.c), plane = t.y.h * t.y.w;
    std::vector<uint32_t> y(got.size() / 4);
    std::memcpy(y.data(), got.data(), y.size() * 4);
    for (int64_t n = 0; n < t.y.n; ++n)
        for (int64_t p = 0; p < plane; ++p)
            for (int64_t c = 0; c < words * 32; ++c) {
                size_t const word = static_cast<size_t>((n * plane + p) * words + c / 32);
                bool const bit = ((y[word] >> (c % 32)) & 1u) != 0;
                if (c >= t.y.c) {
                    r.padBitsSet += bit ? 1 : 0;
                    continue;
                }
                bool const want = ((static_cast<uint32_t>(t.yPackedRef[word]) >> (c % 32)) & 1u) != 0;
                ++r.bits;
                if (bit != want) {
                    double const ref = t.yRef[static_cast<size_t>((n * t.y.c + c) * plane + p)];
                    ++(std::fabs(ref) <= t.signMargin ? r.nearZero : r.mismatches);
                }
            }
}

}  // namespace

void checkPackedComparison() {
    for (auto const& k : opCases()) {
        if (!k.op->outputPacked) continue;
        Context ctx("packed Y comparison / " + k.label);
        HostTensors const t = makeTensors(k, k.opt, k.op->inputPacked ? DataType::kINT32 : DataType::kFLOAT,
                                          DataType::kFLOAT, 11);
        int64_t const words = packedWords(t.y.c), plane = t.y.h * t.y.w;
        std::vector<unsigned char> got = bytesOf(t.yPackedRef);
        EnqueueResult r;
        comparePacked(got, t, r);
        check(r.bits == t.y.n * t.y.c * plane && r.mismatches == 0 && r.nearZero == 0 && r.padBitsSet == 0,
              "the reference's own bits: " + std::to_string(r.bits) + " bits compared, none differ");
        // Flip the sign of the last value (n, M-1, Ho-1, Wo-1) and set the first pad bit of the first pixel.
        size_t const lastWord = static_cast<size_t>(((t.y.n - 1) * plane + plane - 1) * words + (t.y.c - 1) / 32);
        got[lastWord * 4 + static_cast<size_t>(((t.y.c - 1) % 32) / 8)] ^= static_cast<unsigned char>(1u << ((t.y.c - 1) % 8));
        bool const nearZero = std::fabs(t.yRef.back()) <= t.signMargin;
        r = EnqueueResult{};
        comparePacked(got, t, r);
        check(r.mismatches + r.nearZero == 1 && (nearZero ? r.nearZero : r.mismatches) == 1,
              "one flipped sign bit is counted once");
        got = bytesOf(t.yPackedRef);
        int64_t const pad = t.y.c;  // the first channel past M in its 128-bit block
        got[static_cast<size_t>(pad / 32) * 4 + static_cast<size_t>((pad % 32) / 8)] |= static_cast<unsigned char>(1u << (pad % 8));
        r = EnqueueResult{};
        comparePacked(got, t, r);
        check(t.y.c % 128 != 0 && r.padBitsSet == 1 && r.mismatches == 0, "one set pad bit is counted (the case's M leaves pad bits in its last block)");
    }
}

bool runEnqueue(nvinfer1::IPluginV3OneRuntime& rt, OpCase const& k, FormatRow const& row, HostTensors const& t,
                size_t workspaceBytes, EnqueueResult& result, std::string& why) {
    OpModel const& op = *k.op;
    result = EnqueueResult{};
    result.packedY = op.outputPacked;
    if (!canEncode(op, row, why)) return false;
    std::vector<std::vector<unsigned char>> host(4);
    host[0] = op.inputPacked ? bytesOf(t.xPacked) : encodeFloats(t.xv, row[0].type);
    host[1] = op.binaryWeights ? bytesOf(t.wPacked) : encodeFloats(t.wv, row[1].type);
    host[2] = encodeFloats(std::vector<double>(t.scale.begin(), t.scale.end()), row[2].type);
    host[3] = encodeFloats(std::vector<double>(t.shift.begin(), t.shift.end()), row[3].type);
    std::vector<int64_t> const yd = yDims(op, t.y);
    size_t const yBytes = static_cast<size_t>(yd[0] * yd[1] * yd[2] * yd[3]) * elementBytes(row[4].type);

    nvinfer1::PluginTensorDesc in[4], out[1];
    in[0] = tensorDesc(row[0], xDims(op, t.x));
    in[1] = tensorDesc(row[1], weightDims(k));
    in[2] = tensorDesc(row[2], {k.m});
    in[3] = tensorDesc(row[3], {k.m});
    out[0] = tensorDesc(row[4], yd);

    // What an execution context does when the input shapes change, before enqueue.
    if (rt.onShapeChange(in, 4, out, 1) != 0) {
        why = "onShapeChange failed for X " + dimsText(t.x);
        return false;
    }
    GuardedBuffer inputs[4], y, ws;
    void const* inPtrs[4];
    for (int i = 0; i < 4; ++i) {
        cudaError_t e = inputs[i].allocate(host[static_cast<size_t>(i)].size(), 0);
        if (e == cudaSuccess) e = inputs[i].upload(host[static_cast<size_t>(i)]);
        if (e != cudaSuccess) {
            why = cudaText("input buffer", e);
            return false;
        }
        inPtrs[i] = inputs[i].data();
    }
    // Y starts as all-ones bytes (NaN in float32 and float16): an element the plugin does not write stays NaN.
    cudaError_t e = y.allocate(yBytes, 0xFF);
    // The workspace starts as garbage; TensorRT gives no zeroed memory. None at all when 0 bytes were asked for.
    if (e == cudaSuccess && workspaceBytes > 0) e = ws.allocate(workspaceBytes, 0xCD);
    if (e != cudaSuccess) {
        why = cudaText("output/workspace buffer", e);
        return false;
    }
    void* outPtrs[1] = {y.data()};
    cudaStream_t streams[2] = {nullptr, nullptr};
    for (cudaStream_t& s : streams) {
        if ((e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) != cudaSuccess) {
            why = cudaText("cudaStreamCreate", e);
            for (cudaStream_t made : streams) {
                if (made != nullptr) cudaStreamDestroy(made);
            }
            return false;
        }
    }
    // The set-up above ran on the legacy default stream, which non-blocking streams do not wait for.
    if ((e = cudaDeviceSynchronize()) != cudaSuccess) {
        why = cudaText("buffer set-up", e);
        for (cudaStream_t s : streams) cudaStreamDestroy(s);
        return false;
    }
    std::vector<unsigned char> first, second;
    bool ok = true;
    for (int pass = 0; pass < 2 && ok; ++pass) {
        if (pass == 1 && (e = y.fill(0x00, streams[pass])) != cudaSuccess) {
            why = cudaText("reset Y", e);
            ok = false;
            break;
        }
        int32_t const rc = rt.enqueue(in, out, inPtrs, outPtrs, workspaceBytes > 0 ? ws.data() : nullptr, streams[pass]);
        e = cudaStreamSynchronize(streams[pass]);
        if (rc != 0 || e != cudaSuccess) {
            why = "enqueue " + std::to_string(pass + 1) + " returned " + std::to_string(rc) +
                  (e != cudaSuccess ? ", " + cudaText("stream", e) : "");
            ok = false;
            break;
        }
        if ((e = y.download(pass == 0 ? first : second)) != cudaSuccess) {
            why = cudaText("download Y", e);
            ok = false;
        }
    }
    for (cudaStream_t s : streams) cudaStreamDestroy(s);
    if (!ok) return false;
    if (first != second) {
        why = "a second enqueue (another stream, Y reset to zeros) gave a different Y: elements left unwritten, or a "
              "result that is not reproducible";
        return false;
    }
    if (!y.guardsIntact() || (workspaceBytes > 0 && !ws.guardsIntact())) {
        why = "enqueue wrote outside Y or outside the workspace";
        return false;
    }
    for (int i = 0; i < 4; ++i) {
        std::vector<unsigned char> after;
        if (inputs[i].download(after) != cudaSuccess || after != host[static_cast<size_t>(i)] || !inputs[i].guardsIntact()) {
            why = "enqueue modified input " + op.ioNames[static_cast<size_t>(i)] + " (or wrote next to it)";
            return false;
        }
    }
    if (op.outputPacked) {
        comparePacked(first, t, result);
        return true;
    }
    std::vector<double> const got = decodeFloats(first, row[4].type);
    double maxRef = 0, maxErr = 0;
    for (size_t i = 0; i < got.size(); ++i) {
        if (!std::isfinite(got[i])) {
            why = "Y[" + std::to_string(i) + "] is not finite (not written?)";
            return false;
        }
        maxRef = std::max(maxRef, std::fabs(t.yRef[i]));
        maxErr = std::max(maxErr, std::fabs(got[i] - t.yRef[i]));
    }
    result.relErr = maxErr / std::max(maxRef, 1e-30);
    return true;
}

}  // namespace cmcharness
