#!/usr/bin/env python3
"""Same as `edtalk evaluate ...` (the paper's metric protocol); see README, "Evaluation"."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edtalk.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
