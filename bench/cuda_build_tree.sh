#!/usr/bin/env bash
# One hash of the committed files the CUDA build check (bench/cuda_build_check.sh) covers: the
# CUDA and C++ sources, the Triton kernels, the op layer and the build files. .ci/run runs the
# check when it differs from bench/results/cuda_build_check.tree (the hash at the last pass).
set -euo pipefail
cd "$(dirname "$0")/.."
git ls-tree -r HEAD -- csrc prlf_fast/kernels prlf_fast/ops CMakeLists.txt setup.py | git hash-object --stdin
