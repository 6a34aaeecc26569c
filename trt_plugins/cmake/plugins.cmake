# cmc TensorRT plugins: included at the end of trt_plugins/CMakeLists.txt (after the cmc_kernels
# target is defined).
#
#   TENSORRT_INCLUDE_DIR   directory holding NvInferRuntime.h (else searched: TENSORRT_ROOT/include,
#                          $ENV{TENSORRT_INCLUDE_DIR}, JetPack's /usr/include/aarch64-linux-gnu,
#                          /usr/include/x86_64-linux-gnu, /usr/include)
#   TENSORRT_ROOT          a TensorRT tar/zip install (include/ and lib/)
#   TENSORRT_LIB_DIR       directory holding libnvinfer.so* (optional; see cmc_trt_plugins below)
#   CMC_CONTRACTS_DIR      the operator contracts (default: <repo>/plugins)
#   CMC_BUILD_PLUGIN_TESTS build the plugin lifecycle harness (default ON)
#
# Targets (only when TensorRT headers are found; the kernels build either way):
#   cmc_trt_plugins          libcmc_trt_plugins.so: registers its creators when loaded (dlopen,
#                            LD_PRELOAD, Polygraphy --plugins, trtexec --staticPlugins, ORT TensorRT EP
#                            trt_extra_plugin_lib_paths, DeepStream custom-lib-path)
#   cmc_trt_plugins_dynamic  libcmc_trt_plugins_dynamic.so: exports getCreators/setLoggerFinder for
#                            IPluginRegistry::loadLibrary and trtexec --dynamicPlugins (registers nothing
#                            by itself; loadLibrary fails if the creators are already registered)
# See trt_plugins/TENSORRT.md.

get_filename_component(CMC_TRT_PLUGINS_ROOT "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
get_filename_component(_cmc_default_contracts "${CMC_TRT_PLUGINS_ROOT}/../plugins" ABSOLUTE)
set(CMC_CONTRACTS_DIR "${_cmc_default_contracts}" CACHE PATH "Directory of the operator contracts (<op>/contract.json)")
option(CMC_BUILD_PLUGIN_TESTS "Build the TensorRT plugin lifecycle harness" ON)

# ---- TensorRT ---------------------------------------------------------------------------------
set(TENSORRT_ROOT "$ENV{TENSORRT_ROOT}" CACHE PATH "TensorRT install root (include/, lib/)")
set(TENSORRT_LIB_DIR "" CACHE PATH "Directory holding libnvinfer.so*")
find_path(TENSORRT_INCLUDE_DIR NvInferRuntime.h
    HINTS "${TENSORRT_ROOT}/include" "$ENV{TENSORRT_INCLUDE_DIR}"
    PATHS /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/local/tensorrt/include /usr/include
    DOC "Directory holding the TensorRT headers (NvInferRuntime.h)")

if(NOT TENSORRT_INCLUDE_DIR OR NOT EXISTS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h")
    message(STATUS "cmc: TensorRT headers not found (NvInferRuntime.h/NvInferVersion.h): the TensorRT plugin "
                   "targets cmc_trt_plugins and cmc_trt_plugins_dynamic are SKIPPED; the CUDA kernels still build. "
                   "Pass -DTENSORRT_INCLUDE_DIR=<dir> or -DTENSORRT_ROOT=<dir> to build them.")
    return()
endif()

file(STRINGS "${TENSORRT_INCLUDE_DIR}/NvInferVersion.h" _cmc_trt_version_lines
     REGEX "^#define (NV_TENSORRT|TRT)_(MAJOR|MINOR|PATCH)(_ENTERPRISE)? +[0-9]+")
foreach(_part MAJOR MINOR PATCH)
    set(TENSORRT_VERSION_${_part} "")
    foreach(_line IN LISTS _cmc_trt_version_lines)
        if(_line MATCHES "^#define (NV_TENSORRT_${_part}|TRT_${_part}_ENTERPRISE) +([0-9]+)")
            set(TENSORRT_VERSION_${_part} "${CMAKE_MATCH_2}")
        endif()
    endforeach()
endforeach()
set(TENSORRT_VERSION "${TENSORRT_VERSION_MAJOR}.${TENSORRT_VERSION_MINOR}.${TENSORRT_VERSION_PATCH}")
if(TENSORRT_VERSION_MAJOR LESS 10)
    message(STATUS "cmc: TensorRT ${TENSORRT_VERSION} at ${TENSORRT_INCLUDE_DIR} is older than 10.0 (IPluginV3 is "
                   "needed): the TensorRT plugin targets are SKIPPED; the CUDA kernels still build.")
    return()
endif()

get_property(_cmc_languages GLOBAL PROPERTY ENABLED_LANGUAGES)
if(NOT "CUDA" IN_LIST _cmc_languages OR NOT TARGET cmc_kernels)
    message(STATUS "cmc: CUDA language or the cmc_kernels target missing: the TensorRT plugin targets are SKIPPED.")
    return()
endif()
find_package(CUDAToolkit REQUIRED)
message(STATUS "cmc: TensorRT ${TENSORRT_VERSION} headers at ${TENSORRT_INCLUDE_DIR}: building the TensorRT plugins")

# ---- Field tables generated from the contracts -------------------------------------------------
# One header per operator: cmc::plugin::contract::<OpType> with the plugin name/version/namespace, the
# input names, an enum of the field names and the FieldSpec table (kind, length, required, default,
# min, max). CMake re-runs when a contract changes, and file(CONFIGURE) rewrites a header only when its
# text changed.
function(cmc_json_optional out json)
    string(JSON _value ERROR_VARIABLE _err GET "${json}" ${ARGN})
    if(_err)
        set(${out} "" PARENT_SCOPE)
    else()
        set(${out} "${_value}" PARENT_SCOPE)
    endif()
endfunction()

# One C++ struct (text in `out_text`) from one contract's JSON text; `path` names it in messages.
function(cmc_contract_struct json _path out_text)
    set(_json "${json}")
    string(JSON _op GET "${_json}" op_type)
    string(JSON _domain GET "${_json}" domain)
    string(JSON _opset GET "${_json}" version)
    string(JSON _pname GET "${_json}" plugin name)
    string(JSON _pversion GET "${_json}" plugin version)
    string(JSON _pnamespace GET "${_json}" plugin namespace)
    if(NOT _op MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
        message(FATAL_ERROR "cmc: ${_path}: op_type '${_op}' is not a C++ identifier")
    endif()

    string(JSON _nin LENGTH "${_json}" inputs)
    set(_inputs "")
    math(EXPR _last "${_nin} - 1")
    foreach(_i RANGE 0 ${_last})
        string(JSON _iname GET "${_json}" inputs ${_i} name)
        string(APPEND _inputs "\"${_iname}\", ")
    endforeach()

    # Output names and the accuracy tolerances (max |y - y_ref| / max |y_ref|): only the test harness
    # reads them; -1 when the contract states none for that precision.
    string(JSON _nout LENGTH "${_json}" outputs)
    set(_outputs "")
    math(EXPR _last "${_nout} - 1")
    foreach(_i RANGE 0 ${_last})
        string(JSON _oname GET "${_json}" outputs ${_i} name)
        string(APPEND _outputs "\"${_oname}\", ")
    endforeach()
    foreach(_prec float32 float16)
        cmc_json_optional(_tol_${_prec} "${_json}" tolerance ${_prec})
        if("${_tol_${_prec}}" STREQUAL "")
            set(_tol_${_prec} -1)
        endif()
    endforeach()

    string(JSON _nattr LENGTH "${_json}" attributes)
    set(_enum "")
    set(_table "")
    math(EXPR _last "${_nattr} - 1")
    foreach(_i RANGE 0 ${_last})
        string(JSON _name GET "${_json}" attributes ${_i} name)
        string(JSON _type GET "${_json}" attributes ${_i} type)
        if(NOT _name MATCHES "^[a-z_][a-z0-9_]*$")
            message(FATAL_ERROR "cmc: ${_path}: attribute name '${_name}' is not a lower-case C++ identifier")
        endif()
        if(_type STREQUAL "ints")
            set(_kind "FieldKind::kInts")
            string(JSON _len GET "${_json}" attributes ${_i} length)
        elseif(_type STREQUAL "int")
            set(_kind "FieldKind::kInt")
            set(_len 1)
        else()
            message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' has type '${_type}'; the plugins support int and ints")
        endif()
        if(_len GREATER 8 OR _len LESS 1)
            message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' length ${_len} is outside 1..8 (kMaxFieldLength)")
        endif()
        cmc_json_optional(_required "${_json}" attributes ${_i} required)
        if(_required)
            set(_required true)
        else()
            set(_required false)
        endif()
        # Default: a number or an array of numbers of the declared length.
        string(JSON _dtype ERROR_VARIABLE _derr TYPE "${_json}" attributes ${_i} default)
        set(_defaults "")
        set(_ndefault 0)
        if(NOT _derr)
            if(_dtype STREQUAL "ARRAY")
                string(JSON _ndefault LENGTH "${_json}" attributes ${_i} default)
                math(EXPR _dlast "${_ndefault} - 1")
                foreach(_k RANGE 0 ${_dlast})
                    string(JSON _dv GET "${_json}" attributes ${_i} default ${_k})
                    list(APPEND _defaults "${_dv}")
                endforeach()
            elseif(_dtype STREQUAL "NUMBER")
                string(JSON _dv GET "${_json}" attributes ${_i} default)
                set(_defaults "${_dv}")
                set(_ndefault 1)
            else()
                message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' default must be a number or an array")
            endif()
            if(NOT _ndefault EQUAL _len)
                message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' default has ${_ndefault} value(s), length is ${_len}")
            endif()
        elseif(NOT _required)
            message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' is neither required nor has a default")
        endif()
        list(JOIN _defaults ", " _defaults_text)
        cmc_json_optional(_min "${_json}" attributes ${_i} min)
        cmc_json_optional(_max "${_json}" attributes ${_i} max)
        foreach(_bound _min _max)
            if(NOT "${${_bound}}" STREQUAL "" AND NOT "${${_bound}}" MATCHES "^-?[0-9]+$")
                message(FATAL_ERROR "cmc: ${_path}: attribute '${_name}' has a non-integer bound '${${_bound}}'")
            endif()
        endforeach()
        if("${_min}" STREQUAL "")
            set(_has_min false)
            set(_min 0)
        else()
            set(_has_min true)
        endif()
        if("${_max}" STREQUAL "")
            set(_has_max false)
            set(_max 0)
        else()
            set(_has_max true)
        endif()
        string(APPEND _enum "        ${_name} = ${_i},\n")
        string(APPEND _table "        {\"${_name}\", ${_kind}, ${_len}, ${_required}, ${_ndefault}, {${_defaults_text}}, ${_has_min}, ${_min}, ${_has_max}, ${_max}},\n")
    endforeach()

    # Packed 1-bit activations (BinaryConv's packed variants, see cmc_packed_variant_json).
    cmc_json_optional(_in_packed "${_json}" variant input)
    cmc_json_optional(_out_packed "${_json}" variant output)
    foreach(_side _in_packed _out_packed)
        if("${${_side}}" STREQUAL "packed")
            set(${_side} true)
        else()
            set(${_side} false)
        endif()
    endforeach()

    set(${out_text} "struct ${_op} {
    static constexpr char const* kOpType = \"${_op}\";
    static constexpr char const* kDomain = \"${_domain}\";
    static constexpr int32_t kOpsetVersion = ${_opset};
    static constexpr char const* kPluginName = \"${_pname}\";
    static constexpr char const* kPluginVersion = \"${_pversion}\";
    static constexpr char const* kPluginNamespace = \"${_pnamespace}\";

    static constexpr int32_t kNbInputs = ${_nin};
    static constexpr char const* kInputNames[kNbInputs] = {${_inputs}};
    static constexpr int32_t kNbOutputs = ${_nout};
    static constexpr char const* kOutputNames[kNbOutputs] = {${_outputs}};
    static constexpr double kToleranceFloat32 = ${_tol_float32};
    static constexpr double kToleranceFloat16 = ${_tol_float16};
    // X / Y as packed 1-bit activations, int32 [N, H, W, 4*ceil(C/128)] (packed_activations).
    static constexpr bool kInputPacked = ${_in_packed};
    static constexpr bool kOutputPacked = ${_out_packed};

    enum Field : int32_t {
${_enum}    };
    static constexpr int32_t kNbFields = ${_nattr};
    static constexpr FieldSpec kFields[kNbFields] = {
${_table}    };

    static ContractInfo const& info() noexcept {
        static constexpr ContractInfo kInfo{kOpType, kDomain, kOpsetVersion, kPluginName, kPluginVersion,
                                            kPluginNamespace, kFields, kNbFields, kInputNames, kNbInputs};
        return kInfo;
    }
};

" PARENT_SCOPE)
endfunction()

# The JSON of a contract's packed variant `index` (contract.json "packed_activations"), by the rules
# cmc.plugins.contract.variants applies: op type, version and plugin of the variant, the base attributes
# with its attribute_bounds, its extra_attributes appended, X typed as the packed layout when packed.
function(cmc_packed_variant_json json index _path out_json)
    set(_j "${json}")
    string(JSON _v GET "${json}" packed_activations variants ${index})
    string(JSON _vop GET "${_v}" op_type)
    string(JSON _since GET "${json}" packed_activations since_version)
    string(JSON _plugin GET "${_v}" plugin)
    string(JSON _in GET "${_v}" input)
    string(JSON _out GET "${_v}" output)
    string(JSON _j SET "${_j}" op_type "\"${_vop}\"")
    string(JSON _j SET "${_j}" version "${_since}")
    string(JSON _j SET "${_j}" plugin "${_plugin}")
    string(JSON _j SET "${_j}" variant "{\"input\": \"${_in}\", \"output\": \"${_out}\"}")
    string(JSON _j REMOVE "${_j}" packed_activations)
    string(JSON _nattr LENGTH "${json}" attributes)
    math(EXPR _alast "${_nattr} - 1")
    cmc_json_optional(_bounds "${_v}" attribute_bounds)
    if(NOT "${_bounds}" STREQUAL "")
        string(JSON _nb LENGTH "${_bounds}")
        math(EXPR _blast "${_nb} - 1")
        foreach(_b RANGE 0 ${_blast})
            string(JSON _bname MEMBER "${_bounds}" ${_b})
            set(_found -1)
            foreach(_a RANGE 0 ${_alast})
                string(JSON _aname GET "${json}" attributes ${_a} name)
                if(_aname STREQUAL _bname)
                    set(_found ${_a})
                endif()
            endforeach()
            if(_found LESS 0)
                message(FATAL_ERROR "cmc: ${_path}: ${_vop}: attribute_bounds for unknown attribute '${_bname}'")
            endif()
            foreach(_key min max)
                cmc_json_optional(_val "${_bounds}" ${_bname} ${_key})
                if(NOT "${_val}" STREQUAL "")
                    string(JSON _j SET "${_j}" attributes ${_found} ${_key} "${_val}")
                endif()
            endforeach()
        endforeach()
    endif()
    cmc_json_optional(_extra "${_v}" extra_attributes)
    if(NOT "${_extra}" STREQUAL "")
        string(JSON _ne LENGTH "${_extra}")
        if(_ne GREATER 0)
            math(EXPR _elast "${_ne} - 1")
            foreach(_e RANGE 0 ${_elast})
                string(JSON _attr GET "${_extra}" ${_e})
                string(JSON _n LENGTH "${_j}" attributes)
                string(JSON _j SET "${_j}" attributes ${_n} "${_attr}")
            endforeach()
        endif()
    endif()
    if(_in STREQUAL "packed")
        string(JSON _px GET "${json}" packed_activations packed_x)
        string(JSON _j SET "${_j}" inputs 0 "${_px}")
    endif()
    set(${out_json} "${_j}" PARENT_SCOPE)
endfunction()

# cmc_contract_<folder>.h: the contract's struct and one per packed variant it declares.
function(cmc_generate_contract_header folder out_dir out_header)
    set(_path "${CMC_CONTRACTS_DIR}/${folder}/contract.json")
    if(NOT EXISTS "${_path}")
        message(FATAL_ERROR "cmc: operator contract ${_path} not found (set CMC_CONTRACTS_DIR)")
    endif()
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${_path}")
    file(READ "${_path}" _json)
    cmc_contract_struct("${_json}" "${_path}" _structs)
    cmc_json_optional(_variants "${_json}" packed_activations variants)
    if(NOT "${_variants}" STREQUAL "")
        string(JSON _nv LENGTH "${_variants}")
        math(EXPR _vlast "${_nv} - 1")
        foreach(_i RANGE 0 ${_vlast})
            cmc_packed_variant_json("${_json}" ${_i} "${_path}" _vjson)
            cmc_contract_struct("${_vjson}" "${_path}" _vstruct)
            string(APPEND _structs "${_vstruct}")
        endforeach()
    endif()
    set(_header "// Generated by trt_plugins/cmake/plugins.cmake from ${folder}/contract.json. Do not edit:
// change the contract and re-run CMake.
#pragma once

#include <cstdint>

#include \"plugin_fields.h\"

namespace cmc {
namespace plugin {
namespace contract {

${_structs}}  // namespace contract
}  // namespace plugin
}  // namespace cmc
")
    set(_file "${out_dir}/cmc_contract_${folder}.h")
    file(CONFIGURE OUTPUT "${_file}" CONTENT "${_header}" @ONLY)
    set(${out_header} "${_file}" PARENT_SCOPE)
endfunction()

set(CMC_PLUGIN_GENERATED_DIR "${CMAKE_CURRENT_BINARY_DIR}/cmc_generated")
cmc_generate_contract_header(adder_conv "${CMC_PLUGIN_GENERATED_DIR}" _cmc_adder_header)
cmc_generate_contract_header(binary_conv "${CMC_PLUGIN_GENERATED_DIR}" _cmc_binary_header)

# ---- Plugin code (shared by both library variants) --------------------------------------------
# Include directories and flags every plugin translation unit uses (TensorRT and CUDA headers as
# SYSTEM, so their deprecation warnings stay out of our build log).
add_library(cmc_trt_plugin_headers INTERFACE)
target_include_directories(cmc_trt_plugin_headers INTERFACE
    "${CMC_PLUGIN_GENERATED_DIR}"
    "${CMC_TRT_PLUGINS_ROOT}/common"
    "${CMC_TRT_PLUGINS_ROOT}/adder_conv"
    "${CMC_TRT_PLUGINS_ROOT}/binary_conv")
target_include_directories(cmc_trt_plugin_headers SYSTEM INTERFACE "${TENSORRT_INCLUDE_DIR}" ${CUDAToolkit_INCLUDE_DIRS})
target_compile_features(cmc_trt_plugin_headers INTERFACE cxx_std_17)
target_compile_definitions(cmc_trt_plugin_headers INTERFACE
    CMC_TENSORRT_VERSION_MAJOR=${TENSORRT_VERSION_MAJOR} CMC_TENSORRT_VERSION_MINOR=${TENSORRT_VERSION_MINOR})
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(cmc_trt_plugin_headers INTERFACE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
endif()

add_library(cmc_trt_plugin_objs OBJECT
    "${CMC_TRT_PLUGINS_ROOT}/common/plugin_fields.cpp"
    "${CMC_TRT_PLUGINS_ROOT}/common/plugin_log.cpp"
    "${CMC_TRT_PLUGINS_ROOT}/common/plugin_conv.cpp"
    "${CMC_TRT_PLUGINS_ROOT}/common/plugin_cast.cu"
    "${CMC_TRT_PLUGINS_ROOT}/adder_conv/AdderConvPlugin.cpp"
    "${CMC_TRT_PLUGINS_ROOT}/binary_conv/BinaryConvPlugin.cpp"
    "${_cmc_adder_header}"
    "${_cmc_binary_header}")
# cmc_kernels.h lives in common/; the kernels' own interface include directories come along too.
target_include_directories(cmc_trt_plugin_objs PRIVATE $<TARGET_PROPERTY:cmc_kernels,INTERFACE_INCLUDE_DIRECTORIES>)
target_link_libraries(cmc_trt_plugin_objs PUBLIC cmc_trt_plugin_headers)
set_target_properties(cmc_trt_plugin_objs PROPERTIES
    POSITION_INDEPENDENT_CODE ON
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    CUDA_RUNTIME_LIBRARY Shared)
# Same GPU targets as the kernels (CMC_CUDA_ARCHITECTURES from the top-level file, when it sets one).
if(DEFINED CMC_CUDA_ARCHITECTURES)
    set_target_properties(cmc_trt_plugin_objs PROPERTIES CUDA_ARCHITECTURES "${CMC_CUDA_ARCHITECTURES}")
endif()

# libnvinfer: the self-registering variant calls getPluginRegistry()/getLogger(). Linking it (when it
# is found) records a DT_NEEDED, which lets ctypes/dlopen load the plugin in processes whose libnvinfer
# was loaded RTLD_LOCAL (the TensorRT Python bindings); the dynamic variant never links it.
find_library(TENSORRT_NVINFER_LIBRARY
    NAMES nvinfer "libnvinfer.so.${TENSORRT_VERSION_MAJOR}"
    HINTS "${TENSORRT_LIB_DIR}" "${TENSORRT_ROOT}/lib" "${TENSORRT_ROOT}/lib64"
    PATHS /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/tensorrt/lib
    DOC "libnvinfer for the self-registering plugin library (optional)")

# The kernels are linked into shared libraries.
set_target_properties(cmc_kernels PROPERTIES POSITION_INDEPENDENT_CODE ON)

function(cmc_plugin_library target entry)
    add_library(${target} SHARED "${CMC_TRT_PLUGINS_ROOT}/common/${entry}" $<TARGET_OBJECTS:cmc_trt_plugin_objs>)
    # One CUDA runtime per process: the shared libcudart, as cmc_kernels uses (a second, static copy
    # would not see the kernels' registrations).
    target_link_libraries(${target} PRIVATE cmc_trt_plugin_headers cmc_kernels CUDA::cudart)
    set_target_properties(${target} PROPERTIES
        CXX_VISIBILITY_PRESET hidden
        VISIBILITY_INLINES_HIDDEN ON
        CUDA_RUNTIME_LIBRARY Shared
        CUDA_RESOLVE_DEVICE_SYMBOLS ON)
    if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
        # Keep the kernels' symbols private, so that both variants (or another cmc build) can live
        # in one process without binding to each other's code.
        target_link_options(${target} PRIVATE "LINKER:--exclude-libs,ALL")
    endif()
endfunction()

cmc_plugin_library(cmc_trt_plugins plugin_entry_static.cpp)
if(TENSORRT_NVINFER_LIBRARY)
    target_link_libraries(cmc_trt_plugins PRIVATE "${TENSORRT_NVINFER_LIBRARY}")
    message(STATUS "cmc: libcmc_trt_plugins.so links ${TENSORRT_NVINFER_LIBRARY}")
else()
    message(STATUS "cmc: libnvinfer not found (set TENSORRT_LIB_DIR): libcmc_trt_plugins.so leaves getPluginRegistry/"
                   "getLogger to the process that loads it (fine for trtexec, LD_PRELOAD, C++ hosts; Python hosts "
                   "should load libcmc_trt_plugins_dynamic.so with load_library)")
endif()

cmc_plugin_library(cmc_trt_plugins_dynamic plugin_entry_dynamic.cpp)
if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # Proves at link time that the dynamic variant needs nothing from libnvinfer.
    target_link_options(cmc_trt_plugins_dynamic PRIVATE "LINKER:--no-undefined")
endif()

# ---- Plugin lifecycle harness -------------------------------------------------------------------
# Loads both libraries the way TensorRT's tools do and drives every plugin through the builder's and the
# runtime's call order (trt_plugins/tests/harness_lifecycle.h), twice in one process. The executable
# provides the two libnvinfer symbols the self-registering variant calls (tests/plugin_test_stub.cpp),
# so no libnvinfer is needed. Everything but enqueue runs on any machine; enqueue needs a CUDA device:
#   cmc_plugin_harness          the whole lifecycle; enqueue reported SKIPPED without a GPU
#   cmc_plugin_harness_enqueue  the same with --enqueue=require: ctest shows it skipped (77) without a GPU
# Both run with no arguments (library and README paths are compiled in), also under
# `compute-sanitizer --tool memcheck cmc_plugin_harness`.
if(CMC_BUILD_PLUGIN_TESTS)
    enable_testing()
    add_executable(cmc_plugin_harness
        "${CMC_TRT_PLUGINS_ROOT}/tests/plugin_harness.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/plugin_test_stub.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_check.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_fakes.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_fields.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_formats.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_ops.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_enqueue.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_lifecycle_build.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_lifecycle_negotiate.cpp"
        "${CMC_TRT_PLUGINS_ROOT}/tests/harness_lifecycle_runtime.cpp")
    target_include_directories(cmc_plugin_harness PRIVATE "${CMC_TRT_PLUGINS_ROOT}/tests")
    # The harness's own CUDA calls (buffers, streams) use the same shared cudart as the plugins.
    target_link_libraries(cmc_plugin_harness PRIVATE cmc_trt_plugin_headers CUDA::cudart ${CMAKE_DL_LIBS})
    target_compile_definitions(cmc_plugin_harness PRIVATE
        CMC_HARNESS_STATIC_LIB="$<TARGET_FILE:cmc_trt_plugins>"
        CMC_HARNESS_DYNAMIC_LIB="$<TARGET_FILE:cmc_trt_plugins_dynamic>"
        CMC_HARNESS_PLUGINS_ROOT="${CMC_TRT_PLUGINS_ROOT}")
    # The dlopen'ed self-registering library resolves getPluginRegistry/getLogger from the executable.
    set_target_properties(cmc_plugin_harness PROPERTIES ENABLE_EXPORTS ON)
    add_dependencies(cmc_plugin_harness cmc_trt_plugins cmc_trt_plugins_dynamic)
    add_test(NAME cmc_plugin_harness COMMAND cmc_plugin_harness)
    set_tests_properties(cmc_plugin_harness PROPERTIES LABELS "cpu;tensorrt-headers")
    add_test(NAME cmc_plugin_harness_enqueue COMMAND cmc_plugin_harness --enqueue=require)
    set_tests_properties(cmc_plugin_harness_enqueue PROPERTIES LABELS "gpu;tensorrt-headers" SKIP_RETURN_CODE 77)
endif()
