"""golfmodel/train: the three-phase QAT trainer (SPEC §7), τ recalibration and the dry run.

    python -m golfmodel.train --job RUN.json                      # one process
    torchrun --standalone --nproc_per_node=8 -m golfmodel.train --job RUN.json

Modules: `config` (TrainJob and its sections, RUN.json), `schedule` (pure functions of
progress p), `muon` (Muon + AdamW), `data` (distributed token loader), `trainer` (the loop),
`checkpoint` (ckpt/final.pt), `averaging` (EMA/SWA), `runlog` (events/metrics),
`recalibrate` (τ re-fit after training), `dryrun` (size/memory/time projection).
Nothing here reads the environment except `__main__`.
"""
