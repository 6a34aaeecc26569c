// The GPU part of the lifecycle: enqueue with real device buffers, the way an execution context
// calls it (onShapeChange for the new shapes, then enqueue on a stream with a workspace of the size
// getWorkspaceSize() asked for), compared with the float64 reference. Every buffer has guard bytes
// on both sides and the inputs are compared after the call, so out-of-bounds writes and writes into
// inputs are caught even without compute-sanitizer; Y starts as NaN, the workspace as garbage, and
// the call is repeated to check that the result is reproducible.
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
// int32 packed weights, float32 epilogue); false with what is missing otherwise.
bool canEncode(OpModel const& op, FormatRow const& row, std::string& why);

// One run: false with the reason on any failure; `relErr` = max|y - y_ref| / max|y_ref|.
bool runEnqueue(nvinfer1::IPluginV3OneRuntime& rt, OpCase const& k, FormatRow const& row, HostTensors const& t,
                size_t workspaceBytes, double& relErr, std::string& why);

}  // namespace cmcharness
