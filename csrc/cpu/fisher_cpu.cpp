// CPU implementation of prlf_fast::fisher_reliability (docs/design.md §4.2; derivation in docs/fisher.md).
//
// The work is split into tasks of (modality, chunk of kChunk samples), run in parallel. A task
// computes its pre-activations with one BLAS GEMM into a thread-local, cache-resident buffer
// a (d_h, n) = W1_m z_chunkᵀ, then one fused pass over tiles of kTile samples, vectorised across
// the samples of a tile, computes GELU, GELU', the K logits, softmax, ‖u‖², ‖z‖² and the spread
// term in the cancellation-free form
//   F = Σ_{k<k'} p_k p_k' [2(‖u‖² + 1) + D_kk' (‖z‖² + 1)],   D_kk' = Σ_h GELU'(a_h)² (W2_kh − W2_k'h)².
// Nothing of size B × d_h reaches main memory. float and double are computed natively;
// float16/bfloat16 are computed in float32 and rounded.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <tuple>
#include <vector>

#include "cpu/gelu_math.h"
#include "fisher_checks.h"

// The float pass is compiled twice (AVX2+FMA and baseline) and picked at load time; everything it
// calls is force-inlined so that each clone gets its own instruction set.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && defined(__ELF__)
#define PRLF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PRLF_CPU_CLONES
#endif

namespace prlf::cpu {
namespace {

constexpr int64_t kTile = 64;    // samples per tile: the vector lanes of the fused pass
constexpr int64_t kChunk = 256;  // samples per task: its GEMM output stays in L2

template <typename T>
struct FisherPass {
  const T* z;       // (B, M, d)
  const T* b1;      // (M, h)
  const T* w2;      // (M, K, h)
  const T* b2;      // (M, K)
  const T* w2diff;  // (M, P, h) (W2_kh − W2_k'h)² for the P = K(K−1)/2 pairs k < k'
  T* confidence;    // (B, M)
  T* fisher;        // (B, M)
  int64_t B, M, d, h, K, P;
};

// Per-thread buffers: one chunk's pre-activations, and one tile's accumulators (sample fastest).
template <typename T>
struct TaskScratch {
  TaskScratch(int64_t h, int64_t K, int64_t P)
      : pre(h * kChunk), logits(K * kTile), pair_sums(P * kTile), probs(K) {}
  std::vector<T> pre;        // (h, n) W1_m z_chunkᵀ, without b1
  std::vector<T> logits;     // (K, kTile) Σ_h W2_kh u_h
  std::vector<T> pair_sums;  // (P, kTile) D_kk'
  std::vector<T> probs;      // (K) softmax of one sample
  T usq[kTile], u[kTile], g2[kTile];
};

// Accumulates tile samples [t0, t0 + n) of the chunk whose pre-activations (h, lda) are in s.pre.
template <typename T>
PRLF_INLINE void accumulate_tile(const FisherPass<T>& f, int64_t m, int64_t t0, int64_t n,
                                 int64_t lda, TaskScratch<T>& s) {
  std::fill(s.logits.begin(), s.logits.end(), T(0));
  std::fill(s.pair_sums.begin(), s.pair_sums.end(), T(0));
  std::fill(s.usq, s.usq + kTile, T(0));
  T* u = s.u;
  T* g2 = s.g2;
  T* usq = s.usq;
  for (int64_t j = 0; j < f.h; ++j) {
    const T* a = s.pre.data() + j * lda + t0;
    const T bias = f.b1[m * f.h + j];
#pragma omp simd
    for (int64_t r = 0; r < n; ++r) {
      T ur, gr;
      gelu_and_grad(a[r] + bias, ur, gr);
      u[r] = ur;
      g2[r] = gr * gr;
      usq[r] += ur * ur;
    }
    for (int64_t k = 0; k < f.K; ++k) {
      const T w = f.w2[(m * f.K + k) * f.h + j];
      T* o = s.logits.data() + k * kTile;
#pragma omp simd
      for (int64_t r = 0; r < n; ++r) o[r] += w * u[r];
    }
    for (int64_t p = 0; p < f.P; ++p) {
      const T w = f.w2diff[(m * f.P + p) * f.h + j];
      T* dsum = s.pair_sums.data() + p * kTile;
#pragma omp simd
      for (int64_t r = 0; r < n; ++r) dsum[r] += w * g2[r];
    }
  }
}

template <typename T>
PRLF_INLINE void finish_tile(const FisherPass<T>& f, int64_t m, int64_t b0, int64_t n,
                             TaskScratch<T>& s) {
  T* p = s.probs.data();
  for (int64_t r = 0; r < n; ++r) {
    const int64_t row = (b0 + r) * f.M + m;
    const T* zr = f.z + row * f.d;
    T zsq = 0;
#pragma omp simd reduction(+ : zsq)
    for (int64_t i = 0; i < f.d; ++i) zsq += zr[i] * zr[i];
    T top = -std::numeric_limits<T>::infinity();
    for (int64_t k = 0; k < f.K; ++k) {
      p[k] = s.logits[k * kTile + r] + f.b2[m * f.K + k];
      top = std::max(top, p[k]);
    }
    T total = 0;
    for (int64_t k = 0; k < f.K; ++k) {
      p[k] = std::exp(p[k] - top);
      total += p[k];
    }
    const T inv = T(1) / total;  // = max_k p_k: the top logit contributes exp(0)
    for (int64_t k = 0; k < f.K; ++k) p[k] *= inv;
    const T head = T(2) * (s.usq[r] + T(1));
    const T zterm = zsq + T(1);
    T fisher = 0;
    int64_t pair = 0;
    for (int64_t k = 0; k < f.K; ++k)
      for (int64_t k2 = k + 1; k2 < f.K; ++k2, ++pair)
        fisher += p[k] * p[k2] * (head + s.pair_sums[pair * kTile + r] * zterm);
    f.confidence[row] = inv;
    f.fisher[row] = fisher;
  }
}

// The fused pass over the n samples of chunk b0 of modality m, tile by tile.
template <typename T>
PRLF_INLINE void fuse_chunk(const FisherPass<T>& f, int64_t m, int64_t b0, int64_t n,
                            TaskScratch<T>& s) {
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t nt = std::min(kTile, n - t0);
    accumulate_tile(f, m, t0, nt, n, s);
    finish_tile(f, m, b0 + t0, nt, s);
  }
}

PRLF_CPU_CLONES void fuse_chunk_dispatch(const FisherPass<float>& f, int64_t m, int64_t b0,
                                         int64_t n, TaskScratch<float>& s) {
  fuse_chunk(f, m, b0, n, s);
}

void fuse_chunk_dispatch(const FisherPass<double>& f, int64_t m, int64_t b0, int64_t n,
                         TaskScratch<double>& s) {
  fuse_chunk(f, m, b0, n, s);
}

// Tasks are handed out through an atomic counter rather than split statically, so a thread that
// is descheduled (a shared machine) does not leave the other threads idle at the end.
template <typename T>
void fisher_tasks(const FisherPass<T>& f, const at::Tensor& z, const at::Tensor& w1) {
  const int64_t chunks = (f.B + kChunk - 1) / kChunk;
  const int64_t tasks = f.M * chunks;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min<int64_t>(tasks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    // Worker threads do not inherit the caller's "below autograd" dispatch state.
    const at::AutoDispatchBelowADInplaceOrView below_autograd;
    TaskScratch<T> scratch(f.h, f.K, f.P);
    for (int64_t t = next++; t < tasks; t = next++) {
      const int64_t m = t / chunks, b0 = (t % chunks) * kChunk;
      const int64_t n = std::min(kChunk, f.B - b0);
      at::Tensor pre = at::from_blob(scratch.pre.data(), {f.h, n}, z.options());
      at::mm_out(pre, w1[m], z.select(1, m).narrow(0, b0, n).t());
      fuse_chunk_dispatch(f, m, b0, n, scratch);
    }
  });
}

// (M, P, h): (W2_kh − W2_k'h)² for every pair k < k', in triu order.
at::Tensor pairwise_sq_diff(const at::Tensor& w2) {
  const int64_t K = w2.size(1);
  const at::Tensor pairs = at::triu_indices(K, K, 1, w2.options().dtype(at::kLong));
  return (w2.index_select(1, pairs[0]) - w2.index_select(1, pairs[1])).square().contiguous();
}

std::tuple<at::Tensor, at::Tensor> fisher_reliability_cpu(const at::Tensor& z,
                                                          const at::Tensor& w1,
                                                          const at::Tensor& b1,
                                                          const at::Tensor& w2,
                                                          const at::Tensor& b2) {
  const FisherShape s = check_fisher_inputs(z, w1, b1, w2, b2);
  const auto dtype = z.scalar_type();
  if (dtype == at::kHalf || dtype == at::kBFloat16) {
    auto [confidence, fisher] = fisher_reliability_cpu(z.to(at::kFloat), w1.to(at::kFloat),
                                                       b1.to(at::kFloat), w2.to(at::kFloat),
                                                       b2.to(at::kFloat));
    return {confidence.to(dtype), fisher.to(dtype)};
  }
  const at::Tensor zc = z.contiguous(), w1c = w1.contiguous(), b1c = b1.contiguous(),
                   w2c = w2.contiguous(), b2c = b2.contiguous();
  at::Tensor confidence = at::empty({s.B, s.M}, z.options());
  at::Tensor fisher = at::empty({s.B, s.M}, z.options());
  if (s.B == 0) return {confidence, fisher};
  const at::Tensor w2diff = pairwise_sq_diff(w2c);
  AT_DISPATCH_FLOATING_TYPES(dtype, "fisher_reliability_cpu", [&] {
    const FisherPass<scalar_t> pass{zc.const_data_ptr<scalar_t>(),
                                    b1c.const_data_ptr<scalar_t>(),
                                    w2c.const_data_ptr<scalar_t>(),
                                    b2c.const_data_ptr<scalar_t>(),
                                    w2diff.const_data_ptr<scalar_t>(),
                                    confidence.mutable_data_ptr<scalar_t>(),
                                    fisher.mutable_data_ptr<scalar_t>(),
                                    s.B, s.M, s.d, s.h, s.K, w2diff.size(1)};
    fisher_tasks(pass, zc, w1c);
  });
  return {confidence, fisher};
}

}  // namespace
}  // namespace prlf::cpu

TORCH_LIBRARY_IMPL(prlf_fast, CPU, m) {
  m.impl("fisher_reliability", &prlf::cpu::fisher_reliability_cpu);
}
