#!/usr/bin/env bash
# Compile-checks the CUDA sources with nvcc for sm_90 on a machine without a GPU or a CUDA build
# of torch (.ci/run calls it when nvcc exists):
# 1. the device code (csrc/cuda/*_kernel.cuh), without torch: every kernel header instantiated for
#    each input dtype in a throw-away translation unit, warnings as errors;
# 2. the host files (csrc/cuda/*.cu) against the installed torch's headers, which a CPU wheel
#    ships except one generated CMake header, supplied here; catches ATen/c10 API misuse before
#    a GPU machine's build would.
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${PRLF_FAST_NVCC_ARCH:-sm_90}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/fisher_check.cu" <<'CU'
#include "fisher_kernel.cuh"
namespace prlf::cuda {
template cudaError_t launch_fisher_kernel<float>(const FisherArgs<float>&, cudaStream_t);
template cudaError_t launch_fisher_kernel<double>(const FisherArgs<double>&, cudaStream_t);
template cudaError_t launch_fisher_kernel<__half>(const FisherArgs<__half>&, cudaStream_t);
template cudaError_t launch_fisher_kernel<__nv_bfloat16>(const FisherArgs<__nv_bfloat16>&, cudaStream_t);
}
CU

nvcc -c -std=c++17 -arch="$arch" -O3 -Werror all-warnings -Icsrc/cuda \
  "$tmp/fisher_check.cu" -o "$tmp/fisher_check.o"
echo "nvcc_check: csrc/cuda/fisher_kernel.cuh compiles for $arch (float, double, half, bfloat16)"

torch_include="$(python -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "include"))' 2>/dev/null || true)"
if [ -z "$torch_include" ] || [ ! -d "$torch_include/c10/cuda" ]; then
  echo "nvcc_check: no torch headers with c10/cuda; host files not checked"
  exit 0
fi
mkdir -p "$tmp/shim/c10/cuda/impl"
[ -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ] \
  || printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$tmp/shim/c10/cuda/impl/cuda_cmake_macros.h"
abi="$(python -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
for cu in csrc/cuda/*.cu; do
  nvcc -c -std=c++17 -arch="$arch" -O2 -w -Xcompiler -w -D_GLIBCXX_USE_CXX11_ABI="$abi" -Icsrc -I"$tmp/shim" \
    -I"$torch_include" -I"$torch_include/torch/csrc/api/include" "$cu" -o "$tmp/host.o"
  echo "nvcc_check: $cu compiles for $arch against torch's headers"
done
