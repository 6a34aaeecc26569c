#!/usr/bin/env bash
# The plugin lifecycle harness with enqueue on a GPU, under compute-sanitizer memcheck: the GPU half of
# the harness that CPU machines skip. For a GPU run next to ../shared/gpu/run_suite.sh:
#   bash trt_plugins/tests/run_harness_gpu.sh HEADERS_DIR [HEADERS_DIR ...]   (each a TensorRT include/ folder)
# The headers come from the public NVIDIA/TensorRT repository (tags v10.3.0, v11.1) and are carried to the
# GPU machine outside the repository (e.g. in the ignored .gpu/ folder); nothing here fetches them.
# Writes harness_<version>.log into $OUT (default /tmp/out); exit code 0 only if every run passed.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
ARCH=${CMC_CUDA_ARCHITECTURES:-90-real}
[ $# -ge 1 ] || { echo "usage: $0 TENSORRT_INCLUDE_DIR [...]" >&2; exit 2; }
rc=0
for inc in "$@"; do
  [ -f "$inc/NvInferRuntime.h" ] || { echo "$inc: no NvInferRuntime.h" >&2; rc=2; continue; }
  v=$(basename "$(dirname "$inc")"); b=/tmp/cmc_harness_$v; log="$OUT/harness_$v.log"
  { cmake -S trt_plugins -B "$b" -DTENSORRT_INCLUDE_DIR="$inc" -DCMC_CUDA_ARCHITECTURES="$ARCH" \
      -DCMAKE_CUDA_ARCHITECTURES="${ARCH%%-*}" && cmake --build "$b" -j"$(nproc)" --target cmc_plugin_harness; } \
    > "$log" 2>&1 || { echo "harness $v: build failed (see $log)"; rc=1; continue; }
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 9 "$b/cmc_plugin_harness" --rounds 1 \
    --enqueue=require >> "$log" 2>&1
  r=$?; echo "harness $v: compute-sanitizer + enqueue rc=$r"; grep -E '^enqueue: |^FAIL \[' "$log" | head -20
  [ $r -eq 0 ] || rc=1
done
exit $rc
