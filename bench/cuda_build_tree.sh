#!/usr/bin/env bash
# One hash of the files the CUDA build check (bench/cuda_build_check.sh) covers, as they are in
# this working tree (tracked, and untracked ones git does not ignore, as the check copies them):
# the CUDA and C++ sources, the Triton kernels, the op layer and the build files. .ci/run runs the
# check when it differs from bench/results/cuda_build_check.tree (the hash at the last pass).
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-files -z --cached --others --exclude-standard -- csrc kernels prlf_fast/ops CMakeLists.txt setup.py \
  | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
