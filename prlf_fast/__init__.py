"""prlf_fast: PRLF multimodal sentiment analysis under missing modalities, with fast paths."""
from prlf_fast.batch import Batch
from prlf_fast.config import MODALITIES, PRESETS, PRLFConfig
from prlf_fast.model import PRLF, PRLFOutput

__version__ = "0.1.0"
__all__ = ["Batch", "MODALITIES", "PRESETS", "PRLFConfig", "PRLF", "PRLFOutput", "__version__"]
