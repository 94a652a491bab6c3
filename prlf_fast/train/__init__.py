"""Training and robustness evaluation (docs/training.md, docs/protocols.md).

``trainer`` (the loop, ``TrainConfig``), ``evaluate`` (intra/inter protocols), ``run`` (a whole run:
data, training, evaluation, report; what the CLI calls), ``checkpoint`` (safetensors with optimizer
and scheduler state), ``report`` (report.md and plots), ``distributed`` (torchrun/DDP), ``optim``,
``rundir`` and ``atomic`` (file layout and atomic writes). Import the module you need: this package
imports nothing itself, so a checkpoint reader does not pay for matplotlib.
"""
