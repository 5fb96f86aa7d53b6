"""``training.amp: bf16`` and ``training.channels_last`` at run time: an optimizer
wrapper and a hook, registered with MMEngine.

Only the configs of runs that use them import this module (their
``custom_imports``), so it is no part of the training script's code hash: runs
without either setting keep theirs (rules/common.smk adds this file's hash to
the training code of the runs that use it).
"""

from contextlib import contextmanager

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import HOOKS, OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class BF16AmpOptimWrapper(AmpOptimWrapper):
    """On CUDA: MMEngine's AmpOptimWrapper at dtype bfloat16, its GradScaler off (bfloat16
    has float32's exponent range: no loss scale).  Without CUDA: torch's bfloat16
    autocast on the CPU (AmpOptimWrapper's own __init__ asserts a GPU), no scaler.

    Both keep the same state: the optimizer's (a disabled GradScaler's is empty), so a
    run resumes on either device.
    """

    def __init__(self, **kwargs):
        kwargs.pop("loss_scale", None)
        kwargs.pop("dtype", None)
        if torch.cuda.is_available():
            # without emulation: an emulated bfloat16 (Volta, Turing) is far slower than fp32
            if not torch.cuda.is_bf16_supported(including_emulation=False):
                name = torch.cuda.get_device_name()
                raise RuntimeError(
                    f"training.amp: bf16 needs a GPU with bfloat16 (Ampere or newer), not {name}: "
                    "set training.amp to fp16 (or false)"
                )
            super().__init__(loss_scale={"enabled": False}, dtype="bfloat16", **kwargs)
            self.device_type = "cuda"
        else:
            OptimWrapper.__init__(self, **kwargs)
            self._scale_update_param = None
            self.loss_scaler = None
            self.cast_dtype = torch.bfloat16
            self.device_type = "cpu"
        where = "AmpOptimWrapper on CUDA, no loss scale" if self.device_type == "cuda" else "torch.autocast on CPU"
        print_log(f"amp bf16: bfloat16 autocast ({where})", logger="current")

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)

    def step(self, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.step(self, **kwargs)
        else:
            super().step(**kwargs)

    def state_dict(self) -> dict:
        return OptimWrapper.state_dict(self) if self.loss_scaler is None else super().state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        if self.loss_scaler is None:
            state_dict.pop("loss_scaler", None)  # a CUDA run's (disabled, empty) scaler
            OptimWrapper.load_state_dict(self, state_dict)
        else:
            super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        if self.loss_scaler is not None:
            with super().optim_context(model):
                yield
            return
        with OptimWrapper.optim_context(self, model), torch.autocast("cpu", dtype=torch.bfloat16):
            yield


def _channels_last_inputs(module, args, output):
    """The data preprocessor's batch in channels_last layout (a forward hook)."""
    if isinstance(output, dict) and isinstance(output.get("inputs"), torch.Tensor) and output["inputs"].dim() == 4:
        output["inputs"] = output["inputs"].contiguous(memory_format=torch.channels_last)
    return output


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """The model's weights (before training, validation and testing: a resumed or
    loaded checkpoint arrives in NCHW) and the data preprocessor's batches in
    torch.channels_last.  Converting the parameters in place keeps them the
    optimizer's and DDP's (whose gradient buckets follow the new layout when it
    rebuilds them after the first step)."""

    priority = "VERY_HIGH"

    def __init__(self):
        self._preprocessors = set()  # ids of the preprocessors given the forward hook
        self._logged = False

    def _convert(self, runner) -> None:
        model = runner.model
        model.to(memory_format=torch.channels_last)  # 4-d weights only; idempotent
        module = model.module if is_model_wrapper(model) else model
        preprocessor = getattr(module, "data_preprocessor", None)
        if preprocessor is not None and id(preprocessor) not in self._preprocessors:
            preprocessor.register_forward_hook(_channels_last_inputs)
            self._preprocessors.add(id(preprocessor))
        if not self._logged:
            print_log("channels_last: the model's weights and input batches in NHWC layout", logger="current")
            self._logged = True

    def before_train(self, runner) -> None:
        self._convert(runner)

    def before_val(self, runner) -> None:
        self._convert(runner)

    def before_test(self, runner) -> None:
        self._convert(runner)
