"""What the package writes and reads back: crash-safe writes, journaled commits and writer locks
(``atomic``), the run-directory format (``rundir``, ``schema``) and the checkpoint file format
(``checkpoint``). ``atomic``, ``rundir`` and ``schema`` import no torch. Import the module you
need: this package imports nothing itself."""
