#!/usr/bin/env bash
# One GPU run for cmc on a lent H100/H200 (the device tool's `run`): the steps of ../shared/gpu/run_suite.sh
# (CUDA extension, pytest -m gpu, ctest + compute-sanitizer, limits.cu, benchmarks) plus the TensorRT plugin
# harness's enqueue under compute-sanitizer and ncu profiles. At most 8 files land in $OUT (the device tool's
# limit): suite.log gpu_tests.log ctest.log harness.log ncu.txt bench_layers/bench_bnn_net/bench_train_step.json.
#
# Set-up on the developer machine, once per checkout (nothing of it is committed):
#   mkdir -p .gpu && cp ../shared/gpu/* .gpu/ && echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .gpu/whl polygraphy torch-pruning
#   TensorRT headers (public NVIDIA/TensorRT tags v10.3.0, v11.1) extracted to .gpu/trt/<version>/include
# Then: run with carry [".gpu"], command `bash benchmarks/gpu_session.sh`, timeout_s about 500 (it took
# 220-280 s on an H200). Knobs: PYTEST_ARGS, BENCH (names), BENCH_TIMEOUT, PYTEST_TIMEOUT, SUITE_BENCH=0,
# NCU=0, NCU_ADDER=1 (AdderConv profile too; off by default since issue 10 closed), ADDER_LAYER.
# What to read first (issue 11): bench_layers.json's binary_summary — best_prepass_tile vs best_fused_tile
# per layer (the fused kernel is forced only; binaryBmmaTileRule still picks 0-7) — and bench_bnn_net's
# speedups (eager and CUDA-graph replay); ncu.txt has the rule's kernel and every fused tile on the
# workhorse and a 1x1 layer.
set -u
export PYTHONUNBUFFERED=1
FOUT=${OUT:-/tmp/out}; mkdir -p "$FOUT"
T0=$(date +%s); stamp() { echo "== $(( $(date +%s) - T0 ))s $*"; }
PYTEST_ARGS=${PYTEST_ARGS:-}
BENCH=${BENCH:-bench_layers bench_bnn_net bench_train_step}
exec > >(tee "$FOUT/suite.log") 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
stamp "TensorRT probe (issue 19 item 6: logged either way)"
python3 -c "import tensorrt; print('tensorrt python', tensorrt.__version__)" 2>&1 | tail -1
ldconfig -p | grep -i nvinfer || echo "no libnvinfer in ldconfig"
command -v trtexec || echo "no trtexec on PATH"
HAVE_TRT=0; python3 -c "import tensorrt" 2>/dev/null && HAVE_TRT=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl \
  && export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . > /tmp/pip.log 2>&1 || { tail -20 /tmp/pip.log; exit 1; }
export TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 TORCH_EXTENSIONS_DIR=/tmp/ext CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
stamp "limits probe (background compile)"
( nvcc -O3 -arch=sm_90a .gpu/limits.cu -o /tmp/limits > /tmp/limits_build.log 2>&1 ) &
LPID=$!
stamp "build the PyTorch CUDA extension"
timeout 300 python3 -c "from cmc.plugins._cuda import loader; m = loader.load(); print('extension:', m is not None, loader.unavailable_reason() or '')"
stamp "cmake build + ctest + compute-sanitizer (background)"
( { cmake -S trt_plugins -B /tmp/b -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90 -DCMC_CUDA_ARCHITECTURES=90-real \
  && cmake --build /tmp/b -j8 && ctest --test-dir /tmp/b --output-on-failure; echo "cmake/ctest rc=$?"
  [ -x /tmp/b/cmc_device_tests ] && timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 /tmp/b/cmc_device_tests
  echo "compute-sanitizer device tests rc=$?"; } > "$FOUT/ctest.log" 2>&1 ) &
CPID=$!
stamp "GPU tests"
timeout ${PYTEST_TIMEOUT:-280} python3 -m pytest -q -m gpu tests -p no:cacheprovider -n 8 -rfEs --durations=12 $PYTEST_ARGS \
  > "$FOUT/gpu_tests.log" 2>&1; echo "pytest rc=$?"; tail -25 "$FOUT/gpu_tests.log"
wait $CPID; tail -4 "$FOUT/ctest.log"
stamp "plugin harness, enqueue under compute-sanitizer"
OUT=/tmp/out_h CMC_CUDA_ARCHITECTURES=90-real bash trt_plugins/tests/run_harness_gpu.sh .gpu/trt/10.3/include .gpu/trt/11.1/include
echo "harness rc=$?"; cat /tmp/out_h/harness_*.log > "$FOUT/harness.log" 2>/dev/null
if [ "$HAVE_TRT" = 1 ]; then
  stamp "TensorRT present: tensorrt-marked tests and --to trt on the samples"
  timeout 240 python3 -m pytest -q -m tensorrt tests -p no:cacheprovider -rfEs > "$FOUT/trt_tests.log" 2>&1; echo "trt pytest rc=$?"
  timeout 240 cmc-export samples/checkpoints/addernet_resnet20.pth --arch samples.addernet_resnet20:resnet20 \
    --input-shape 1x3x32x32 --to trt -o /tmp/trt_out >> "$FOUT/trt_tests.log" 2>&1; echo "cmc-export --to trt rc=$?"
fi
wait $LPID; /tmp/limits | tee /tmp/limits.txt; export CMC_LIMITS_FILE=/tmp/limits.txt
if [ "${SUITE_BENCH:-1}" = 1 ]; then
  for n in $BENCH; do
    stamp "$n"; timeout ${BENCH_TIMEOUT:-200} python3 benchmarks/$n.py --out "$FOUT/$n.json" 2> "/tmp/$n.log"
    echo "$n rc=$?"; grep -v '^\s*$' "/tmp/$n.log" | tail -60
  done
fi
if [ "${NCU:-1}" = 1 ]; then
  stamp "ncu"
  S="--section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats --section InstructionStats"
  ( cd benchmarks && if [ "${NCU_ADDER:-0}" = 1 ]; then timeout 120 ncu --clock-control none --profile-from-start off --target-processes all $S \
      -o /tmp/adder_ncu -f python3 profile_adder.py --layer ${ADDER_LAYER:-r18.l3.3x3.256-256} > /tmp/ncu_a.log 2>&1; fi;
    timeout 120 ncu --clock-control none --profile-from-start off --target-processes all $S \
      -o /tmp/bin_ncu -f python3 profile_binary.py --layer bnn.3x3.256-256.14 > /tmp/ncu_b.log 2>&1
    timeout 120 ncu --clock-control none --profile-from-start off --target-processes all $S \
      -o /tmp/bin1x1_ncu -f python3 profile_binary.py --layer r50.l1.1x1.64-256 > /tmp/ncu_c.log 2>&1 )
  { tail -5 /tmp/ncu_a.log /tmp/ncu_b.log /tmp/ncu_c.log 2>/dev/null; for r in /tmp/adder_ncu /tmp/bin_ncu /tmp/bin1x1_ncu; do
      [ -f $r.ncu-rep ] && ncu --import $r.ncu-rep --page details --print-units base; done; } > "$FOUT/ncu.txt" 2>&1
fi
stamp end
