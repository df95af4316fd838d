#!/usr/bin/env python
"""EDTalk demo: `python demo.py --source face.png --audio speech.wav ...` (same flags as `edtalk generate`).

Run `python demo.py --help` for every option.
"""
import sys

from edtalk.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    known = {"generate", "download", "presets", "examples"}
    sys.exit(main(args if args and args[0] in known else ["generate", *args]))
