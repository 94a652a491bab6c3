"""Reports of runs (``run``: report.md) and sweeps (``sweep``), their plots (``plots``) and the
optional TensorBoard log (``tensorboard``). Import the module you need: this package imports
nothing itself, so a reader of results does not pay for matplotlib."""
