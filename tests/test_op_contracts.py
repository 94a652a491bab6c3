"""Custom-op contracts, checked on CPU under TRITON_INTERPRET=1: ``torch.library.opcheck`` of every
``prlf_fast_triton::`` op (schema, fake impl, autograd registration, and dynamic shapes through
aot_dispatch_dynamic), and ``torch.compile(dynamic=True)`` of the whole model's forward and
backward on backend "triton" at two batch sizes against eager (one graph for both). (The compiled ``prlf_fast::`` op has
its opcheck in tests/test_extension.py.)"""
import copy

import pytest
import torch
from conftest import assert_error_rule, random_batch, tiny_config
from helpers import batch_to

from prlf_fast import PRLF
from prlf_fast.ops import WEIGHT_NAMES

pytestmark = [pytest.mark.triton, pytest.mark.slow]


def attention_args():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, n, 8, generator=g).requires_grad_() for n in (3, 5, 5))
    valid = torch.tensor([[True, False, True, True, False], [False] * 5])
    return q, k, v, valid


def interact_args(stacked=False):
    """streams, anchor, gates and the WEIGHT_NAMES weights (d 16, 2 heads, T 3, FFN 24); with
    ``stacked``, each weight for 2 iterations."""
    g = torch.Generator().manual_seed(1)
    b, t, d, f = 2, 3, 16, 24
    shapes = {"fc1.weight": (f, d), "fc1.bias": (f,), "fc2.weight": (d, f)}
    weights = [torch.randn(*((2,) if stacked else ()),
                           *shapes.get(name, (d, d) if name.endswith("weight") and name[:2] != "ln" else (d,)),
                           generator=g) * 0.3 for name in WEIGHT_NAMES]
    streams, anchor = torch.randn(b, 2, t, d, generator=g), torch.randn(b, t, d, generator=g)
    return streams, anchor, torch.rand(b, 2, generator=g), weights


def sample(name):
    ops = torch.ops.prlf_fast_triton
    if name == "masked_attention_fwd":
        return attention_args()
    if name == "masked_attention_bwd":
        q, k, v, valid = (t.detach() for t in attention_args())
        out, lse = ops.masked_attention_fwd(q, k, v, valid)
        return torch.randn_like(out), q, k, v, valid, out, lse
    if name == "interact_stack_fwd":
        return (*interact_args(stacked=True), 2, 1e-5)
    streams, anchor, gates, weights = interact_args()
    keep = torch.ones_like(streams, dtype=torch.uint8)
    if name == "interact_iteration_fwd":
        leaves = [t.requires_grad_() for t in (streams, anchor, gates, *weights)]
        return leaves[0], leaves[1], leaves[2], leaves[3:], keep, keep.clone(), 1.25, 2, 1e-5
    return torch.randn_like(streams), streams, anchor, gates, weights, None, None, 1.0, 2, 1e-5


def registered_triton_ops():
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                  if n.startswith("prlf_fast_triton::"))


OPS = ["masked_attention_fwd", "masked_attention_bwd", "interact_iteration_fwd", "interact_iteration_bwd",
       "interact_stack_fwd"]


def test_every_triton_op_is_checked():
    assert registered_triton_ops() == sorted(OPS)


@pytest.mark.parametrize("name", OPS)
def test_opcheck(name):
    torch.library.opcheck(getattr(torch.ops.prlf_fast_triton, name).default, sample(name))


def test_model_compiles_with_dynamic_shapes_forward_and_backward():
    """One compiled function of the model on backend "triton", two batch sizes: the loss and every
    gradient against the reference backend by the error rule."""
    torch._dynamo.reset()
    cfg = tiny_config(n_interact=1)
    torch.manual_seed(0)
    model = PRLF(cfg, backend="triton").eval()
    exact_model = copy.deepcopy(model).double()
    exact_model.backend = "reference"

    def loss_fn(batch):
        return model.loss(model(batch), batch)["total"]

    def loss_and_grads(fn, batch, params):
        loss = fn(batch)
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [loss, *(torch.zeros_like(p) if g is None else g for p, g in zip(params, grads))]

    # aot_eager: Dynamo and AOTAutograd (fake impls, symbolic shapes, the autograd registrations)
    # without Inductor's C++ code generation, which takes minutes on 2 cores; on CUDA the kernel
    # tests compile with Inductor.
    compiled = torch.compile(loss_fn, dynamic=True, fullgraph=True, backend="aot_eager")
    names = ["loss", *(n for n, _ in model.named_parameters())]
    params = list(model.parameters())
    for b, seed in ((3, 1), (5, 2)):
        batch = random_batch(cfg, b, seed=seed, lengths={"audio": torch.tensor([0] + [4] * (b - 1))})
        model.backend = "triton"
        with torch._dynamo.config.patch(error_on_recompile=b == 5):   # one graph for both sizes
            fast = loss_and_grads(compiled, batch, params)
        model.backend = "reference"
        same = loss_and_grads(loss_fn, batch, params)
        exact = loss_and_grads(lambda x: exact_model.loss(exact_model(x), x)["total"],
                               batch_to(batch, torch.float64, "cpu"), list(exact_model.parameters()))
        assert_error_rule(fast, same, exact, names)
