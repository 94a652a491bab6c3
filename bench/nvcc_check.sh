#!/usr/bin/env bash
# Compile-checks the CUDA device code (csrc/cuda/*_kernel.cuh) with nvcc for sm_90, without torch:
# every kernel header is instantiated for each input dtype in a throw-away translation unit.
# Runs on a machine without a GPU or a CUDA build of torch; .ci/run calls it when nvcc exists.
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
