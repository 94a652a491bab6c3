"""``python -m prlf_fast.cli`` (and ``torchrun -m prlf_fast.cli train ...``)."""
import sys

from prlf_fast.cli import main

if __name__ == "__main__":
    sys.exit(main())
