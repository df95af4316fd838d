#!/usr/bin/env python3
"""Raw MEAD / HDTF downloads → EDTalk training trees (see README.md here and
edtalk/data/preprocess_real.py, where the code lives)."""
import sys

from edtalk.data.preprocess_real import main

if __name__ == "__main__":
    sys.exit(main())
