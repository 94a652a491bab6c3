"""prlf_fast: PRLF multimodal sentiment analysis under missing modalities, with fast paths."""
from prlf_fast.batch import Batch
from prlf_fast.config import MODALITIES, PRESETS, PRLFConfig
from prlf_fast.model import PRLF, PRLFOutput

__version__ = "0.1.0"
__all__ = ["Batch", "MODALITIES", "PRESETS", "PRLFConfig", "PRLF", "PRLFOutput", "load_run", "__version__"]


def load_run(run_dir, device="auto", backend: str = "fast"):
    """The trained ``PRLF`` of a ``prlf-fast train`` run directory (selected checkpoint, eval mode;
    ``model.config`` is its ``PRLFConfig``). See ``prlf_fast.train.predict.load_run``."""
    from prlf_fast.train.predict import load_run as load

    return load(run_dir, device, backend)
