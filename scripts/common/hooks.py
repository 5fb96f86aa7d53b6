"""MMEngine hooks the training job registers around the Runner.

* a non-finite loss stops training with a clear error (and is recorded: a
  retry of the same config fails at once);
* checkpoints also carry the RNG states, restored on resume;
* a resumed run first validates the epoch whose checkpoint was saved but
  whose validation was cut short, so the learning curve has no holes.
"""

import math
import random
from pathlib import Path

import numpy as np
import torch
from mmengine.hooks import Hook

from common.history import history_from_scalars
from common.work_dir import write_nonfinite


class NonFiniteLossHook(Hook):
    """Stop training at the first NaN or infinite loss."""

    priority = "VERY_HIGH"

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        loss = (outputs or {}).get("loss")
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()  # float() of a tensor that needs grad warns (torch >= 2.6)
        if loss is not None and not math.isfinite(float(loss)):
            message = f"loss is {float(loss)} at epoch {runner.epoch + 1}, iteration {runner.iter + 1}"
            # a retry of the same config would stop here again: the next attempt reads this and fails at once
            write_nonfinite(Path(runner.work_dir), message)
            raise FloatingPointError(
                f"{message}: training stopped (lower the learning rate?); no metrics are written for this run"
            )


class RngStateHook(Hook):
    """Keep Python's, NumPy's and torch's RNG states in every checkpoint."""

    priority = "LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint["rng_state"] = {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if not state:
            return
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        runner.logger.info("restored the RNG states of the checkpoint")


class ValidateResumedEpochHook(Hook):
    """On resume, validate the checkpoint's epoch first if its validation never finished.

    MMEngine saves ``epoch_N.pth`` in ``after_train_epoch`` and validates epoch N
    after that: a job cancelled in between resumes at N + 1 and epoch N would
    have no val mIoU.  The run's scalar logs tell whether N was validated.
    """

    priority = "VERY_LOW"

    def before_train(self, runner) -> None:
        epoch, loop = runner.epoch, runner.train_loop
        if epoch == 0 or runner.val_loop is None or not should_validate(epoch, loop):
            return
        validated = {row["epoch"] for row in history_from_scalars(Path(runner.work_dir)) if row["mIoU"] is not None}
        if epoch in validated:
            return
        runner.logger.info("epoch %d was saved but not validated before the job stopped: validating it now", epoch)
        runner.val_loop.run()


def should_validate(epoch: int, loop) -> bool:
    """Whether MMEngine's EpochBasedTrainLoop validates after ``epoch``."""
    return epoch >= loop.val_begin and (epoch % loop.val_interval == 0 or epoch == loop.max_epochs)
