#!/usr/bin/env python
"""EDTalk demo: `python demo.py --source face.png --audio speech.wav ...` (same flags as `edtalk generate`).

`python demo.py` with no arguments writes results/demo.mp4 with whatever weights are here: the released
ones (checkpoints/, or $EDTALK_CHECKPOINTS) on the bundled photo, else the bundled SynthTalk model
(checkpoints/synthtalk, or $EDTALK_BUNDLED_MODEL) on a bundled SynthTalk face and speech, and says which
in one line; with neither it is one error line. Run `python demo.py --help` for every option.
"""
import sys

from edtalk.cli import main as cli_main
from edtalk.errors import exit_code_of

SUBCOMMANDS = {"generate", "download", "presets", "examples"}


def run_default_demo() -> int:
    from edtalk.bundled import default_demo

    plan = default_demo()
    print(plan.notice, flush=True)
    return cli_main(plan.argv)


def main(args) -> int:
    if not args:
        return exit_code_of(run_default_demo)
    return cli_main(args if args[0] in SUBCOMMANDS else ["generate", *args])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
