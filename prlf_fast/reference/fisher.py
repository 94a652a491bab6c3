"""Reference AMRE reliability: recognition confidence and closed-form Fisher-information trace.

For a recognition head a = W1 z + b1, u = GELU(a), o = W2 u + b2, p = softmax(o), the trace of
the Fisher information of θ = (W1, b1, W2, b2) under the head's own predictive distribution is

    F = (1 − ‖p‖²)(‖u‖² + 1) + (Σ_k p_k ‖G_k‖² − ‖G p‖²)(‖z‖² + 1),  G = diag(GELU′(a)) W2ᵀ

(docs/design.md §4.2). With g = GELU′(a), the middle factor is Σ_h g_h² (Σ_k p_k W2_kh² − (Σ_k p_k W2_kh)²).
"""
from __future__ import annotations

import math

import torch


def gelu_grad(a):
    """Derivative of the exact (erf) GELU: Φ(a) + a φ(a)."""
    cdf = 0.5 * (1.0 + torch.erf(a * (1.0 / math.sqrt(2.0))))
    pdf = torch.exp(-0.5 * a * a) * (1.0 / math.sqrt(2.0 * math.pi))
    return cdf + a * pdf


def recognition_logits(z, w1, b1, w2, b2):
    """Per-modality head. z (B, M, d), w1 (M, h, d), b1 (M, h), w2 (M, K, h), b2 (M, K).

    Returns (a, u, o): pre-activation (B, M, h), hidden (B, M, h), logits (B, M, K).
    """
    a = torch.einsum("bmd,mhd->bmh", z, w1) + b1
    u = torch.nn.functional.gelu(a)
    o = torch.einsum("bmh,mkh->bmk", u, w2) + b2
    return a, u, o


def fisher_spread(a, p, w2):
    """Σ_k p_k ‖G_k‖² − ‖G p‖² (B, M), G = diag(GELU′(a)) W2ᵀ: a (B, M, h), p (B, M, K), w2 (M, K, h)."""
    g2 = gelu_grad(a).square()                                        # (B, M, h)
    second = torch.einsum("bmk,mkh->bmh", p, w2.square())             # Σ_k p_k W2_kh²
    mean = torch.einsum("bmk,mkh->bmh", p, w2)                        # (W2ᵀ p)_h
    return (g2 * (second - mean.square())).sum(dim=-1)


def fisher_reliability(z, w1, b1, w2, b2):
    """(confidence, fisher), each (B, M), computed in the inputs' dtype with plain torch ops."""
    a, u, o = recognition_logits(z, w1, b1, w2, b2)
    p = torch.softmax(o, dim=-1)
    confidence = p.amax(dim=-1)
    spread = fisher_spread(a, p, w2)
    head_out = (1.0 - p.square().sum(dim=-1)) * (u.square().sum(dim=-1) + 1.0)
    fisher = head_out + spread * (z.square().sum(dim=-1) + 1.0)
    return confidence, fisher


def fisher_reliability_oracle(z, w1, b1, w2, b2):
    """Test oracle: F = Σ_k p_k ‖∇_θ log p_k‖² from per-sample Jacobians (torch.func).

    Materialises every per-sample gradient, so it is slow; tests and benchmarks compare the
    closed form and the compiled ops against it.
    """
    from torch.func import jacrev, vmap

    def log_probs(params, x):
        a = params[0] @ x + params[1]
        return torch.log_softmax(params[2] @ torch.nn.functional.gelu(a) + params[3], dim=-1)

    def per_sample(params, x):
        logp = log_probs(params, x)
        jac = jacrev(log_probs)(params, x)                            # each (K, *param shape)
        sq = sum(j.reshape(j.shape[0], -1).square().sum(dim=-1) for j in jac)
        p = logp.exp()
        return p.max(), (p * sq).sum()

    conf, fisher = [], []
    for m in range(z.shape[1]):
        c, f = vmap(per_sample, in_dims=(None, 0))((w1[m], b1[m], w2[m], b2[m]), z[:, m])
        conf.append(c)
        fisher.append(f)
    return torch.stack(conf, dim=1), torch.stack(fisher, dim=1)
