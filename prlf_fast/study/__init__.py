"""Studies: seeds × variants × datasets sweeps of ``prlf-fast train`` cells, run through submitit
(local processes or Slurm), aggregated into ``summary.json``, ``report.md`` and plots.
See docs/studies.md. Nothing here imports torch at module level."""
