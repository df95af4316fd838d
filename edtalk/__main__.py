"""`python -m edtalk ...` is the `edtalk` command (and what `torchrun -m edtalk batch ...` runs)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
