#!/usr/bin/env python
"""EDTalk demo: `python demo.py --source face.png --audio speech.wav ...` (same flags as `edtalk generate`).

`python demo.py` with no arguments writes results/demo.mp4 with whatever weights are here: the released
ones (checkpoints/, or $EDTALK_CHECKPOINTS) on the bundled photo, else the bundled SynthTalk model
(checkpoints/synthtalk, or $EDTALK_BUNDLED_MODEL) on a bundled SynthTalk face and speech, and says which
in one line; with neither it is one error line. With your own inputs and no weight flags the same
choice holds: the released weights, else the bundled model (one line says so: it knows cartoon faces
only). Run `python demo.py --help` for every option.
"""
import sys

from edtalk.cli import main as cli_main
from edtalk.errors import exit_code_of

SUBCOMMANDS = {"generate", "download", "presets", "examples", "batch", "webui"}


def run_plan(plan) -> int:
    if plan.notice:
        print(plan.notice, flush=True)
    return cli_main(plan.argv)


def run_default_demo() -> int:
    from edtalk.bundled import default_demo

    return run_plan(default_demo())


def run_own_inputs(args) -> int:
    from edtalk.bundled import own_inputs_demo

    return run_plan(own_inputs_demo(args))


def main(args) -> int:
    if not args:
        return exit_code_of(run_default_demo)
    if args[0] in SUBCOMMANDS:
        return cli_main(args)
    return exit_code_of(run_own_inputs, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
