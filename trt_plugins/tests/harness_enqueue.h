// The GPU part of the lifecycle: enqueue with real device buffers, the way an execution context
// calls it (onShapeChange for the new shapes, then enqueue on a stream with a workspace of the size
// getWorkspaceSize() asked for), compared with the float64 reference. Every buffer has guard bytes
// on both sides and the inputs are compared after the call, so out-of-bounds writes and writes into
// inputs are caught even without compute-sanitizer; Y starts as NaN (all bits set), the workspace as
// garbage, and the call is repeated on another stream with Y zeroed: elements left unwritten, and
// results that are not reproducible, make the two differ.
#pragma once

#include <string>

#include <NvInferRuntime.h>

#include "harness_formats.h"
#include "harness_ops.h"

namespace cmcharness {

struct GpuStatus {
    bool available = false;
    std::string reason;  // why not (no device, no driver, ...)
    std::string device;  // "NVIDIA H100 80GB HBM3 (sm_90)"
};
GpuStatus probeGpu();

// Whether the harness can produce data for `row` (float32/float16 activations and weights, BinaryConv's
// int32 packed weights, packed int32 X / Y of the packed variants, float32 epilogue); false with what is
// missing otherwise.
bool canEncode(OpModel const& op, FormatRow const& row, std::string& why);

struct EnqueueResult {
    bool packedY = false;
    double relErr = 0;          // float Y: max|y - y_ref| / max|y_ref|
    int64_t bits = 0;           // packed Y: sign bits compared (N * Ho * Wo * M)
    int64_t mismatches = 0;     // ... that differ from the reference's where |y_ref| > HostTensors::signMargin
    int64_t nearZero = 0;       // ... that differ where |y_ref| <= signMargin (the float sum of binarize_input 0 rounds)
    int64_t padBitsSet = 0;     // ... pad bits (channels M.. of the last 128-bit block) that are not 0
};

// One run: a packed X is the packed form of t.xv (pad bits garbage); Y is compared with the float64
// reference (float Y) or bit by bit with its signs (packed Y). The second enqueue runs on another
// stream with Y reset to zeros (a BinaryConv plugin then orders itself after its weight preparation on
// the first stream). False with the reason on any failure.
bool runEnqueue(nvinfer1::IPluginV3OneRuntime& rt, OpCase const& k, FormatRow const& row, HostTensors const& t,
                size_t workspaceBytes, EnqueueResult& result, std::string& why);

// The comparison runEnqueue applies to a packed Y, checked on the host (no GPU needed): the reference's
// own bits give no difference, one flipped sign bit / one set pad bit are each counted once, for every
// case with a packed Y. Failures are counted by check().
void checkPackedComparison();

}  // namespace cmcharness
