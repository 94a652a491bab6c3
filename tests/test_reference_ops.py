"""Reference ops: the closed-form Fisher against the torch.func oracle, gradchecks, masking."""
import pytest
import torch

from prlf_fast import reference


def _head(b, m, d, h, k, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return r(b, m, d), r(m, h, d) * scale, r(m, h), r(m, k, h) * scale, r(m, k)


@pytest.mark.parametrize("b,m,d,h,k", [(1, 1, 3, 2, 2), (5, 3, 7, 5, 3), (4, 2, 9, 11, 5), (3, 3, 6, 4, 7)])
def test_closed_form_fisher_matches_per_sample_gradients(b, m, d, h, k):
    args = _head(b, m, d, h, k, seed=b * 100 + k)
    c, f = reference.fisher_reliability(*args)
    c_o, f_o = reference.fisher_reliability_oracle(*args)
    torch.testing.assert_close(c, c_o, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f, f_o, rtol=1e-11, atol=1e-11)
    assert (f > 0).all() and ((c >= 1.0 / k - 1e-12) & (c <= 1.0)).all()


def test_fisher_oracle_by_hand_for_one_sample():
    """Independent check of the oracle itself: autograd per class, summed by hand."""
    z, w1, b1, w2, b2 = _head(1, 1, 4, 3, 3, seed=7)
    params = [t[0].clone().requires_grad_() for t in (w1, b1, w2, b2)]
    logp = torch.log_softmax(params[2] @ torch.nn.functional.gelu(params[0] @ z[0, 0] + params[1]) + params[3], -1)
    expected = sum(logp[k].exp().item() * sum(g.square().sum().item() for g in
                   torch.autograd.grad(logp[k], params, retain_graph=True)) for k in range(3))
    _, f = reference.fisher_reliability_oracle(z, w1, b1, w2, b2)
    assert f.item() == pytest.approx(expected, rel=1e-12)


def test_gelu_grad_matches_autograd():
    a = torch.linspace(-6, 6, 101, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(torch.nn.functional.gelu(a).sum(), a)
    torch.testing.assert_close(reference.gelu_grad(a.detach()), auto)


def test_fisher_reference_gradcheck():
    args = [t.requires_grad_() for t in _head(2, 2, 3, 4, 3, seed=1)]
    assert torch.autograd.gradcheck(lambda *a: reference.fisher_reliability(*a)[1], args)


def _attn_inputs(b, h, lq, lk, dh, seed):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(b, h, n, dh, generator=g, dtype=torch.float64) for n in (lq, lk, lk))
    valid = torch.rand(b, lk, generator=g) > 0.4
    valid[0] = False          # a row with no valid key
    valid[-1, :] = False
    valid[-1, lk // 2] = True  # a row with one valid key
    return q, k, v, valid


def test_masked_attention_gradcheck_with_empty_rows():
    q, k, v, valid = _attn_inputs(3, 2, 3, 5, 4, seed=0)
    args = [t.requires_grad_() for t in (q, k, v)]
    assert torch.autograd.gradcheck(lambda *a: reference.masked_attention(*a, valid), args)


def test_masked_attention_semantics():
    q, k, v, valid = _attn_inputs(3, 2, 3, 5, 4, seed=1)
    q.requires_grad_()
    out = reference.masked_attention(q, k, v, valid)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    out.sum().backward()
    assert torch.equal(q.grad[0], torch.zeros_like(q.grad[0])) and torch.isfinite(q.grad).all()
    # One valid key: the output is exactly that key's value.
    torch.testing.assert_close(out[-1], v[-1, :, 5 // 2 : 5 // 2 + 1].expand_as(out[-1]))
    # Invalid keys do not matter.
    invalid = (~valid)[:, None, :, None]
    k2, v2 = k + 1e3 * invalid, v + torch.randn_like(v) * invalid
    torch.testing.assert_close(reference.masked_attention(q, k2, v2, valid), out)
    # No mask equals an all-valid mask.
    full = torch.ones_like(valid)
    torch.testing.assert_close(reference.masked_attention(q, k, v, full), reference.masked_attention(q, k, v))
