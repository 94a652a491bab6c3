"""Triton kernels of prlf_fast (installed as ``prlf_fast.kernels``): device code and the host
functions that launch it; see docs/kernels.md. The ops that call those launchers (checks, fake
impls, autograd, selection) are registered in ``prlf_fast/ops/`` and imported with ``prlf_fast``;
``prlf_fast.ops.interact_iteration`` and ``interact_stack`` are the fused iteration's entry points.

Imported under any other name, this folder is being found as a top-level module ``kernels``
because the repository's root is on ``sys.path`` (``python -m ...`` or ``python -c`` run there).
That name belongs to other distributions (Hugging Face's ``kernels``, which transformers imports
for the BERT encoder): the import is handed to the module the rest of ``sys.path`` holds, or
fails as if this folder were not there.
"""
if __name__ == "prlf_fast.kernels":
    from prlf_fast.kernels.attention import masked_attention

    __all__ = ["masked_attention"]
else:
    import importlib.machinery
    import importlib.util
    import os
    import sys

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]
    _spec = importlib.machinery.PathFinder.find_spec(__name__, _path)
    if _spec is None:
        raise ModuleNotFoundError(f"No module named {__name__!r} ({os.path.dirname(__file__)} is prlf_fast's "
                                  "Triton kernels, imported as prlf_fast.kernels)", name=__name__)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _module   # the import system returns what sys.modules holds after this file
    _spec.loader.exec_module(_module)
