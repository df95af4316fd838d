#!/usr/bin/env python3
"""Raw MEAD / HDTF downloads → EDTalk training trees: `edtalk prepare-data` (see README.md here and
edtalk/data/preprocess_real.py, where the code lives)."""
import sys

from edtalk.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare-data", *sys.argv[1:]]))
