"""The training loop: a :class:`~fg3dgs.train.trainer.Trainer`'s schedule from where the run
stands to its end, stage after stage, with log lines, checkpoints and previews at their
intervals and the wall time of each stage; on Ctrl-C the state is saved first.

It drives the trainer through its step API (``start_stage``, ``step_once``) and its outputs
(``save_state``, ``write_preview``, ``write_loss_curve``, ``export``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import STAGES, TrainError
from .checkpoint import STATE


class StageSeconds:
    """Adds the wall time since the last call (or its start) to a stage's entry of
    ``seconds`` (the run's ``stage_seconds``: kept across resumes, written to
    identity.json)."""

    def __init__(self, seconds: dict[str, float]):
        self.seconds = seconds
        self.mark = time.perf_counter()

    def add(self, stage: str):
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self.mark
        self.mark = now


def run_schedule(trainer) -> Path:
    """Run ``trainer`` to the end of its schedule, then write the loss curve and export the
    identity; returns the run folder."""
    from tqdm import tqdm

    its = trainer.cfg.iterations
    total = sum(its.get(s, 0) for s in STAGES)
    done = sum(its.get(s, 0) for s in STAGES[:STAGES.index(trainer.stage)])
    bar = tqdm(total=total, initial=done + trainer.step, unit="it", desc=trainer.stage,
               disable=not trainer.progress, dynamic_ncols=True)
    clock = StageSeconds(trainer.stage_seconds)
    try:
        while True:
            run_stage(trainer, bar, clock)
            trainer.write_preview()
            clock.add(trainer.stage)
            k = STAGES.index(trainer.stage)
            nxt = next((s for s in STAGES[k + 1:] if its.get(s, 0) > 0), None)
            if nxt is None:
                trainer.save_state()
                break
            bar.set_description(nxt)
            trainer.start_stage(nxt)
            trainer.save_state()
    except KeyboardInterrupt:
        bar.close()
        clock.add(trainer.stage)
        trainer.save_state()
        raise
    bar.close()
    trainer.write_loss_curve()
    return trainer.export()


def run_stage(trainer, bar, clock: StageSeconds):
    """The current stage's remaining steps. The loss is read on log and checkpoint steps
    only: the only waits for the device."""
    c, n = trainer.cfg, trainer.cfg.iterations[trainer.stage]
    while trainer.step < n:
        after = trainer.step + 1
        log = after % c.log_every == 0 or after == n
        save = after % c.checkpoint_every == 0 and after < n
        loss, p = trainer.step_once(quality=log)
        trainer.step = after
        bar.update(1)
        if log or save:
            loss, p = float(loss), (float(p) if log else None)
            if not np.isfinite(loss):
                raise TrainError(
                    f"the loss became {loss} by {trainer.stage} step {trainer.step}; the last "
                    f"checkpoint ({STATE}) is from before, resume from it (--resume) or "
                    "start over with lower learning rates")
        if log:
            trainer.history.append([trainer.stage, trainer.step, loss, p])
            bar.set_postfix(loss=f"{loss:.4f}", psnr=f"{p:.2f}",
                            gaussians=sum(len(g) for g in trainer.model.gaussians.values()))
        if save:
            clock.add(trainer.stage)
            trainer.save_state()
        if trainer.step % c.preview_every == 0:
            trainer.write_preview()
