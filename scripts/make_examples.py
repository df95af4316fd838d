#!/usr/bin/env python
"""Regenerate the bundled example inputs in examples/ (see examples/README.md)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edtalk.examples import make_examples  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "examples"), help="output folder")
    parser.add_argument("--speech", choices=("auto", "espeak", "synth"), default="auto",
                        help="speech engine: espeak-ng if installed (auto), or the built-in synthesis")
    args = parser.parse_args()
    paths = make_examples(args.out, engine=args.speech)
    for name, path in paths.items():
        if name != "engine":
            print(f"{path}  ({Path(path).stat().st_size // 1024} KiB)")
    print(f"speech engine: {paths['engine']}")


if __name__ == "__main__":
    main()
