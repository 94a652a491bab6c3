"""The robustness evaluation of a trained model: both missing-modality protocols (``robustness``)
and the anchor diagnostics (``anchors``). Import the module you need."""
