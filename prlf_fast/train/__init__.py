"""Training: the loop (``trainer``), the optimizer and schedule (``optim``), torchrun/DDP
(``distributed``), a whole run from data to report (``run``: what ``train`` and ``eval`` call)
and per-sample predictions of a trained run (``predict``: ``load_run``). Import the module you
need: this package imports nothing itself."""
