// Device kernel of prlf_fast::fisher_reliability (docs/design.md §4.2; derivation in docs/fisher.md).
// CUDA runtime headers only, no torch: bench/nvcc_check.sh compile-checks it without a GPU.
//
// One block scores kRows samples of one modality. Per chunk of kThreads hidden units it
//   1. computes a = W1 z (+ b1) with z and W1 staged through shared memory, one unit per thread
//      and kRows accumulators in registers,
//   2. evaluates u = GELU(a) and g = GELU'(a) and stores u and g² in shared memory,
//   3. reduces over the chunk's units into per-sample sums: the K logits Σ W2_kh u_h, the
//      pair terms D_kk' = Σ g_h² (W2_kh − W2_k'h)² and ‖u‖².
// Then one thread per sample applies softmax and
//   F = Σ_{k<k'} p_k p_k' [2(‖u‖² + 1) + D_kk' (‖z‖² + 1)],  confidence = max_k p_k.
// Inputs may be float, double, __half or __nv_bfloat16; accumulation is float (double for double).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "fisher_limits.h"

namespace prlf::cuda {

constexpr int kRows = 16;        // samples per block
constexpr int kThreads = 128;    // threads per block = hidden units per chunk
constexpr int kDChunk = 32;      // slice of d staged per step
constexpr int kPad = kThreads + 1;  // row stride of unit-indexed shared arrays (no bank conflicts)

template <typename T>
struct FisherArgs {
  const T* z;   // (B, M, d) contiguous
  const T* w1;  // (M, h, d)
  const T* b1;  // (M, h)
  const T* w2;  // (M, K, h)
  const T* b2;  // (M, K)
  T* confidence;  // (B, M)
  T* fisher;      // (B, M)
  int64_t B;
  int M, d, h, K;
};

template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(double* p, double v) { *p = v; }
__device__ __forceinline__ void store(__half* p, float v) { *p = __float2half_rn(v); }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// u = GELU(a) = a Φ(a), g = GELU'(a) = Φ(a) + a φ(a).
__device__ __forceinline__ void gelu_and_grad(float a, float& u, float& g) {
  const float cdf = normcdff(a);
  u = a * cdf;
  g = cdf + a * expf(-0.5f * a * a) * 0.398942280401432678f;
}
__device__ __forceinline__ void gelu_and_grad(double a, double& u, double& g) {
  const double cdf = normcdf(a);
  u = a * cdf;
  g = cdf + a * exp(-0.5 * a * a) * 0.398942280401432678;
}

// Per-sample sums: K logits, K(K−1)/2 pair terms, ‖u‖².
__host__ __device__ constexpr int sums_per_sample(int K) { return K + K * (K - 1) / 2 + 1; }

template <typename Acc>
constexpr size_t fisher_smem_bytes(int K) {
  return sizeof(Acc) * (kRows * kDChunk         // z slice
                        + kDChunk * kPad         // W1 slice, transposed
                        + 2 * kRows * kPad       // u and g² of the chunk
                        + K * kPad               // W2 columns of the chunk
                        + kRows * sums_per_sample(K)
                        + kRows);                // ‖z‖²
}

template <typename T>
__global__ void __launch_bounds__(kThreads) fisher_kernel(const FisherArgs<T> a) {
  using Acc = typename AccType<T>::type;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int Q = sums_per_sample(a.K);
  Acc* zs = reinterpret_cast<Acc*>(smem_raw);
  Acc* w1s = zs + kRows * kDChunk;
  Acc* us = w1s + kDChunk * kPad;
  Acc* g2s = us + kRows * kPad;
  Acc* w2s = g2s + kRows * kPad;
  Acc* sums = w2s + a.K * kPad;
  Acc* zsq = sums + kRows * Q;

  const int m = blockIdx.y;
  const int64_t b0 = static_cast<int64_t>(blockIdx.x) * kRows;
  const int tid = threadIdx.x;
  for (int i = tid; i < kRows * Q; i += kThreads) sums[i] = Acc(0);
  if (tid < kRows) zsq[tid] = Acc(0);

  for (int j0 = 0; j0 < a.h; j0 += kThreads) {
    const int j = j0 + tid;
    Acc acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = Acc(0);

    for (int d0 = 0; d0 < a.d; d0 += kDChunk) {
      __syncthreads();  // the previous slice (and chunk) is no longer read
      for (int i = tid; i < kRows * kDChunk; i += kThreads) {
        const int r = i / kDChunk, c = i % kDChunk;
        const int64_t b = b0 + r;
        zs[i] = (b < a.B && d0 + c < a.d) ? to_acc(a.z[(b * a.M + m) * a.d + d0 + c]) : Acc(0);
      }
      for (int i = tid; i < kThreads * kDChunk; i += kThreads) {
        const int jj = i / kDChunk, c = i % kDChunk;
        w1s[c * kPad + jj] = (j0 + jj < a.h && d0 + c < a.d)
                                 ? to_acc(a.w1[(static_cast<int64_t>(m) * a.h + j0 + jj) * a.d + d0 + c])
                                 : Acc(0);
      }
      __syncthreads();
      if (j0 == 0 && tid < kRows) {
        Acc s = 0;
        for (int c = 0; c < kDChunk; ++c) s += zs[tid * kDChunk + c] * zs[tid * kDChunk + c];
        zsq[tid] += s;
      }
#pragma unroll 4
      for (int c = 0; c < kDChunk; ++c) {
        const Acc w = w1s[c * kPad + tid];
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[r] += zs[r * kDChunk + c] * w;
      }
    }

    const bool valid = j < a.h;  // threads past d_h hold zero units
    const Acc bias = valid ? to_acc(a.b1[static_cast<int64_t>(m) * a.h + j]) : Acc(0);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      Acc u, g;
      gelu_and_grad(acc[r] + bias, u, g);
      us[r * kPad + tid] = valid ? u : Acc(0);
      g2s[r * kPad + tid] = valid ? g * g : Acc(0);
    }
    for (int k = 0; k < a.K; ++k)
      w2s[k * kPad + tid] = valid ? to_acc(a.w2[(static_cast<int64_t>(m) * a.K + k) * a.h + j]) : Acc(0);
    __syncthreads();

    const int width = min(kThreads, a.h - j0);
    for (int i = tid; i < kRows * Q; i += kThreads) {
      const int r = i / Q, q = i % Q;
      const Acc* u = us + r * kPad;
      Acc s = 0;
      if (q < a.K) {
        const Acc* w = w2s + q * kPad;
        for (int jj = 0; jj < width; ++jj) s += u[jj] * w[jj];
      } else if (q < Q - 1) {
        int k = 0, pair = q - a.K;  // pair index in (k, k') order, k < k'
        while (pair >= a.K - 1 - k) pair -= a.K - 1 - k++;
        const Acc* wk = w2s + k * kPad;
        const Acc* wl = w2s + (k + 1 + pair) * kPad;
        const Acc* g2 = g2s + r * kPad;
        for (int jj = 0; jj < width; ++jj) {
          const Acc diff = wk[jj] - wl[jj];
          s += g2[jj] * diff * diff;
        }
      } else {
        for (int jj = 0; jj < width; ++jj) s += u[jj] * u[jj];
      }
      sums[i] += s;
    }
  }
  __syncthreads();

  const int64_t b = b0 + tid;
  if (tid >= kRows || b >= a.B) return;
  const Acc* s = sums + tid * Q;
  Acc p[kMaxClasses];
  Acc top = s[0] + to_acc(a.b2[static_cast<int64_t>(m) * a.K]);
  for (int k = 0; k < a.K; ++k) {
    p[k] = s[k] + to_acc(a.b2[static_cast<int64_t>(m) * a.K + k]);
    top = p[k] > top ? p[k] : top;
  }
  Acc total = 0;
  for (int k = 0; k < a.K; ++k) {
    p[k] = exp_acc(p[k] - top);
    total += p[k];
  }
  const Acc inv = Acc(1) / total;  // = max_k p_k
  const Acc head = Acc(2) * (s[Q - 1] + Acc(1));
  const Acc zterm = zsq[tid] + Acc(1);
  Acc fisher = 0;
  int pair = a.K;
  for (int k = 0; k < a.K; ++k)
    for (int l = k + 1; l < a.K; ++l, ++pair) fisher += p[k] * inv * p[l] * inv * (head + s[pair] * zterm);
  const int64_t out = b * a.M + m;
  store(a.confidence + out, inv);
  store(a.fisher + out, fisher);
}

// Launches the kernel on `stream` for args.B >= 1 samples and 1 <= K <= kMaxClasses.
template <typename T>
cudaError_t launch_fisher_kernel(const FisherArgs<T>& args, cudaStream_t stream) {
  using Acc = typename AccType<T>::type;
  const size_t smem = fisher_smem_bytes<Acc>(args.K);
  if (smem > 48 * 1024) {
    const cudaError_t err = cudaFuncSetAttribute(
        fisher_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
    if (err != cudaSuccess) return err;
  }
  const dim3 grid(static_cast<unsigned>((args.B + kRows - 1) / kRows), static_cast<unsigned>(args.M));
  fisher_kernel<T><<<grid, kThreads, smem, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace prlf::cuda
