"""A run's ``config.py``: common/mmseg_config.py's rendering, plus the settings that
came after it, ``training.amp: bf16`` and ``training.channels_last``.

They live here, not in mmseg_config.py: the training script imports mmseg_config,
so any edit of it changes the training code's hash and retrains every finished run.
A run with neither setting is rendered by mmseg_config itself, byte for byte as
before; one with either imports ``common.precision`` (its optimizer wrapper and
hook) through the config's ``custom_imports``.  Pure Python, as mmseg_config.
"""

from pathlib import Path

from common import mmseg_config
from common.mmseg_config import COMMENTS, _format

# training.amp: the optimizer wrapper of each value (true and fp16 are the same runs)
OPTIM_WRAPPERS = {
    False: "OptimWrapper", True: "AmpOptimWrapper", "fp16": "AmpOptimWrapper", "bf16": "BF16AmpOptimWrapper",
}  # fmt: skip
PRECISION_MODULE = "common.precision"  # scripts/common/precision.py
BF16_COMMENT = "MMEngine's AmpOptimWrapper at dtype bfloat16, no loss scale (CPU: torch's bfloat16 autocast)"
CHANNELS_LAST_COMMENT = "the model's weights and input batches in channels_last (NHWC) layout"


def normalized(run: dict) -> dict:
    """``run`` with amp fp16 as true and channels_last only when on (as the plan's settings)."""
    run = dict(run)
    if run.get("amp") == "fp16":
        run["amp"] = True
    if not run.get("channels_last"):
        run.pop("channels_last", None)
    return run


def uses_precision_module(run: dict) -> bool:
    """Whether the run's config needs common.precision: amp bf16 or channels_last."""
    return run.get("amp") == "bf16" or bool(run.get("channels_last"))


def config_values(run: dict) -> dict:
    """mmseg_config.config_values with bf16's optimizer wrapper and channels_last's hook."""
    run = normalized(run)
    values = mmseg_config.config_values({**run, "amp": run["amp"] is True})
    if run["amp"] == "bf16":  # the fp32 wrapper's keys: no loss scale
        values["optim_wrapper"]["type"] = OPTIM_WRAPPERS["bf16"]
    if run.get("channels_last"):
        values["custom_hooks"] = [{"type": "ChannelsLastHook"}]
    return values


def render_config(run: dict, config_dir: Path | None = None) -> str:
    """The text of ``config.py`` for one run (see mmseg_config.render_config)."""
    run = normalized(run)
    if run.get("amp") not in OPTIM_WRAPPERS:
        raise mmseg_config.ConfigError(f"training.amp: {run.get('amp')!r} is none of false, true, fp16, bf16")
    if not uses_precision_module(run):
        return mmseg_config.render_config(run, config_dir)
    # the header (title, _base_) as mmseg_config writes it; then one custom_imports line
    plain = mmseg_config.render_config({**run, "amp": False, "channels_last": False}, config_dir).split("\n")
    header = plain[: next(i for i, line in enumerate(plain) if line.startswith("_base_ = ")) + 1]
    imports = (["mmpretrain.models"] if run.get("backbone", "resnet") == "convnext" else []) + [PRECISION_MODULE]
    lines = header + [
        "",
        f"# {PRECISION_MODULE}: the workflow's scripts/common/precision.py (by hand: PYTHONPATH=scripts)",
        f"custom_imports = dict(imports={imports!r}, allow_failed_imports=False)",
        "",
    ]
    for name, value in config_values(run).items():
        text = COMMENTS.get(name)
        if name == "optim_wrapper" and value["type"] == OPTIM_WRAPPERS["bf16"]:
            text = BF16_COMMENT
        elif name == "custom_hooks":
            text = CHANNELS_LAST_COMMENT
        lines.append(f"{name} = {_format(value)}" + (f"  # {text}" if text else ""))
    return "\n".join(lines) + "\n"
