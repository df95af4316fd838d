"""Training: one trainer (`trainer`) for every stage (`stage`: base class + registry; built-in
stages in `stages/`), losses defined once (`losses`), OmegaConf configs (`config`), generator
initialisation incl. the LIA converter (`init`).  Command line: `edtalk train --config FILE
[key=value ...]` or `torchrun --nproc_per_node N -m edtalk.cli train --config FILE ...`.
"""
