"""training.amp (false, true = fp16, bf16) and training.channels_last: runs with
neither bf16 nor channels_last keep their settings, configs, recipes and training
code hash (nothing retrains); bf16 and channels_last render, load and train (on
the CPU: torch's bfloat16 autocast, NHWC weights and batches)."""

from __future__ import annotations

import copy
import hashlib
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

import make_golden as golden
from common import mmseg_config
from common.code import code_digest, code_files
from common.config_errors import validate_config
from common.plan import Paths, Plan, expand_paths
from common.references import check_run, load_references, run_recipe, variant_recipe
from common.run_config import render_config

# Computed before amp bf16 and channels_last existed: the training code's hash (the
# param and work-dir stamp of every finished run) and the configs of runs without
# them. A change of either retrains every finished run: update them only for that.
TRAIN_CODE_BEFORE = "f5b97c4132e1ebee"
RUN_DIR = REPO / "results/runs/vocaug/e30-s0"  # the configs' _base_ is relative to it
RENDERS_BEFORE = {
    "default": ({}, "cf9a0560295605e5c9ccbaadd38c86552760ef617e35bc77e7247b6813657bd1"),
    "amp": ({"amp": True}, "bfdd37a413bf9c0dbacc9458fad61a49dcc7c6bc19d81b21259fb78ad7791cfd"),
    "convnext_amp": (
        {"backbone": "convnext", "size": "small", "pretrained": "mmpretrain://convnext_small", "amp": True},
        "082ad084184798a5de221e8a4c3d2647434aaa7827f8647f24dfa9847d44ad62",
    ),
    "swin": (
        {"backbone": "swin", "pretrained": "mmseg://swin_tiny"},
        "fedaeb3b1086788ce9c8e53ff5d8289b662a86b6094ab4733a76f63f3fefa15a",
    ),
    "demo": (
        {**golden.DEMO_TRAINING, "variant": "voc", "train_sets": golden.VOC_TRAIN, "epochs": 6},
        "3c18688cae414919f46208a05cd7a2f9a0f3a57e776c4902c7a3e4d0743f7b80",
    ),
}
SCHEMA = REPO / "config/schemas/config.schema.yaml"
STUDY = yaml.safe_load((REPO / "config/config.yaml").read_text())
PATHS = Paths(voc="data/VOC2012", splits="data/VOC2012/ImageSets/Segmentation", subsets="data/subsets", results="out")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_the_training_code_hash_is_the_one_before_these_settings():
    scripts = REPO / "scripts"
    assert code_digest(scripts / "train_upernet.py") == TRAIN_CODE_BEFORE
    names = {path.name for path in code_files(scripts / "train_upernet.py")}
    assert "mmseg_config.py" in names  # why the rendering of bf16 and channels_last is in run_config.py
    assert not names & {"precision.py", "run_config.py"}


@pytest.mark.parametrize("name", RENDERS_BEFORE)
def test_runs_without_bf16_or_channels_last_render_as_before(name):
    overrides, before = RENDERS_BEFORE[name]
    run = golden.study_run(**overrides)
    assert run["channels_last"] is False  # the schema's default, as every run has it now
    text = render_config(run, RUN_DIR)
    assert sha256(text) == before
    assert text == mmseg_config.render_config(run, RUN_DIR)
    assert "common.precision" not in text
    if run["amp"]:
        assert render_config({**run, "amp": "fp16"}, RUN_DIR) == text  # fp16 is true
    no_key = {k: v for k, v in run.items() if k != "channels_last"}
    assert render_config(no_key, RUN_DIR) == text


def load(run: dict, folder: Path) -> tuple[str, Config]:
    text = render_config(run, folder)
    (folder / "config.py").write_text(text)
    return text, Config.fromfile(str(folder / "config.py"))  # imports its custom_imports


def test_bf16_renders_the_bf16_wrapper_without_a_loss_scale(tmp_path):
    text, cfg = load(golden.study_run(amp="bf16"), tmp_path)
    assert cfg.optim_wrapper.type == "BF16AmpOptimWrapper" and "loss_scale" not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer.type == "SGD"  # the base config's optimizer, as before
    assert "AmpOptimWrapper at dtype bfloat16" in text.split("optim_wrapper = ")[1].splitlines()[0]
    assert cfg.custom_imports == {"imports": ["common.precision"], "allow_failed_imports": False}
    assert "custom_hooks" not in cfg


def test_channels_last_renders_its_hook_and_one_import_list_with_convnexts(tmp_path):
    run = golden.study_run(channels_last=True, backbone="convnext", pretrained="mmpretrain://convnext_tiny", amp=True)
    text, cfg = load(run, tmp_path)
    assert cfg.custom_hooks == [{"type": "ChannelsLastHook"}]
    assert text.count("custom_imports = ") == 1
    assert cfg.custom_imports.imports == ["mmpretrain.models", "common.precision"]
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == "dynamic"
    assert cfg.model.backbone.type == "mmpretrain.ConvNeXt"
    # everything but the added lines is the config the run renders without channels_last
    plain = render_config({**run, "channels_last": False}, tmp_path).splitlines()
    assert [line for line in text.splitlines() if line not in plain] == [
        "# common.precision: the workflow's scripts/common/precision.py (by hand: PYTHONPATH=scripts)",
        "custom_imports = dict(imports=['mmpretrain.models', 'common.precision'], allow_failed_imports=False)",
        "custom_hooks = [dict(type='ChannelsLastHook')]  # the model's weights and input batches in channels_last "
        "(NHWC) layout",
    ]


# ---- the plan: settings (the rules' params) ------------------------------------------
def merged(base: dict, layer: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in layer.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def plan(name: str, monkeypatch, tmp_path, **training) -> Plan:
    """The plan of config/<name>.yaml (over config/config.yaml) with ``training`` over it;
    its archives left out (downloaded), a dataset's archive any file."""
    monkeypatch.chdir(REPO)
    config = STUDY if name == "config" else merged(STUDY, yaml.safe_load((REPO / f"config/{name}.yaml").read_text()))
    config = merged(config, {"training": training})
    for source in config["data"].values():
        source["archive"] = None
    (tmp_path / "archive.tar").touch()
    for dataset in config.get("datasets", {}).values():
        dataset["archive"] = str(tmp_path / "archive.tar")
    validate_config(config, SCHEMA, [])
    expand_paths(config)
    return Plan(config, {n: STUDY["data"][n]["md5"] for n in STUDY["data"]}, PATHS)


def run_settings(p: Plan) -> list[dict]:
    return [p.run_settings(r["variant"], r["budget"], r["seed"], "work") for r in p.all_runs]


@pytest.mark.parametrize("name", ["config", "demo"])
def test_the_plans_settings_keep_their_keys_and_fp16_is_true(name, monkeypatch, tmp_path):
    default = plan(name, monkeypatch, tmp_path)
    training = default.config["training"]
    for settings in default.settings.values():
        # the training keys there were before channels_last, fp16 never (it is true)
        kept = set(training) - {*mmseg_config.RUNTIME_SETTINGS, "channels_last"}
        assert {k for k in settings if k in training} == kept
        assert settings["amp"] in (False, True)
    assert run_settings(plan(name, monkeypatch, tmp_path, channels_last=False)) == run_settings(default)
    fp16, true = plan(name, monkeypatch, tmp_path, amp="fp16"), plan(name, monkeypatch, tmp_path, amp=True)
    assert run_settings(fp16) == run_settings(true) != run_settings(default)
    assert fp16.variant_recipes == true.variant_recipes
    on = plan(name, monkeypatch, tmp_path, channels_last=True, amp="bf16")
    assert all(s["channels_last"] is True and s["amp"] == "bf16" for s in on.settings.values())


# ---- snakemake check: the recipe rows ----------------------------------------------------
REFERENCES = load_references(REPO / "config/references.yaml")
TRAINING = golden.schema_training()


def rows(**training) -> tuple[dict, dict]:
    settings = {**TRAINING, **training, "train_sets": golden.VOCAUG}
    recipe = run_recipe(variant_recipe(settings, True, REFERENCES["datasets"]), 30, 10582)
    check = check_run(recipe, REFERENCES)
    assert check["reference"]["recipe"]["amp"] is False  # MMSeg's VOC config: fp32
    return recipe, {row["setting"]: row for row in check["rows"]}


def test_the_precision_row_names_the_dtype_and_memory_format_appears_only_when_on():
    recipe, table = rows()
    assert "channels_last" not in recipe and recipe["amp"] is False
    assert "memory format" not in table
    assert (table["precision"]["run"], table["precision"]["reference"], table["precision"]["differs"]) == (
        "fp32", "fp32", False
    )  # fmt: skip
    for amp, text in ((True, "AMP fp16"), ("fp16", "AMP fp16"), ("bf16", "AMP bf16")):
        recipe, table = rows(amp=amp)
        assert recipe["amp"] == (True if amp == "fp16" else amp)
        assert (table["precision"]["run"], table["precision"]["differs"]) == (text, True)
    recipe, table = rows(channels_last=True)
    assert recipe["channels_last"] is True and not table["precision"]["differs"]
    assert table["memory format"]["differs"] and table["memory format"]["run"] == "channels_last (NHWC)"


# ---- run time: the optimizer wrapper, the hook, a tiny training on the CPU ---------------
@pytest.fixture
def cpu_only(monkeypatch):
    """As on a machine without CUDA, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def bf16_wrapper(model):
    from common.precision import BF16AmpOptimWrapper

    return BF16AmpOptimWrapper(optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))


def test_the_bf16_wrapper_autocasts_on_the_cpu_without_a_loss_scaler(cpu_only):
    conv = torch.nn.Conv2d(3, 4, 3)
    wrapper = bf16_wrapper(conv)
    with wrapper.optim_context(conv):
        out = conv(torch.randn(2, 3, 8, 8))
    assert out.dtype == torch.bfloat16 and wrapper.loss_scaler is None
    wrapper.update_params(out.float().square().mean())
    state = wrapper.state_dict()
    assert "loss_scaler" not in state and state["state"]  # the momentum
    again = bf16_wrapper(conv)
    again.load_state_dict({**copy.deepcopy(state), "loss_scaler": {}})  # a CUDA run's (disabled) scaler
    assert again.state_dict()["state"][0]["momentum_buffer"].equal(state["state"][0]["momentum_buffer"])


def test_the_bf16_wrapper_on_cuda_is_mmengines_at_bfloat16_and_shares_the_cpus_state(monkeypatch):
    """The CUDA path as far as a machine without a GPU can take it (no autocast here)."""
    conv = torch.nn.Conv2d(3, 4, 3)
    with monkeypatch.context() as gpu:
        gpu.setattr(torch.cuda, "is_available", lambda: True)
        gpu.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
        wrapper = bf16_wrapper(conv)
        assert wrapper.cast_dtype is torch.bfloat16 and not wrapper.loss_scaler.is_enabled()  # no loss scale
        wrapper.update_params(conv(torch.randn(2, 3, 8, 8)).square().mean())
        state = wrapper.state_dict()
    assert state["loss_scaler"] == {} and state["state"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    on_cpu = bf16_wrapper(conv)
    on_cpu.load_state_dict(copy.deepcopy(state))  # a run resumed on another device
    assert on_cpu.state_dict()["state"][0]["momentum_buffer"].equal(state["state"][0]["momentum_buffer"])


def test_bf16_on_a_gpu_without_bfloat16_stops_naming_the_setting_and_the_fix(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    with pytest.raises(RuntimeError) as caught:
        bf16_wrapper(torch.nn.Conv2d(3, 4, 3))
    message = str(caught.value)
    assert "training.amp: bf16" in message and "fp16" in message and "V100" in message and "\n" not in message


PROBE: dict = {}


@HOOKS.register_module(force=True)
class PrecisionProbeHook(Hook):
    """Records, while the run trains: the head's output dtypes, whether the backbone's
    input batches are channels_last, the losses, and the weights' layout at the end."""

    priority = "LOWEST"

    def before_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        PROBE.update(dtypes=set(), nhwc_inputs=set(), losses=[])

        def head(module, args, out):
            if module.training:
                PROBE["dtypes"].add(out.dtype)

        def backbone(module, args):
            if module.training:
                PROBE["nhwc_inputs"].add(args[0].is_contiguous(memory_format=torch.channels_last))

        model.decode_head.conv_seg.register_forward_hook(head)
        model.backbone.register_forward_pre_hook(backbone)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        PROBE["losses"].append(float(outputs["loss"].detach()))

    def after_train(self, runner):
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        convs = [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.weight.shape[-1] > 1]
        PROBE["nhwc_weights"] = {w.is_contiguous(memory_format=torch.channels_last) for w in convs}


def train_tiny(tmp_path: Path, **settings) -> dict:
    """One epoch of the golden tiny R-18 (12 images of tests/golden/voc) with train_upernet.train()."""
    from train_upernet import train

    run = {**golden.tiny_run(golden.VOC, tmp_path / "work", epochs=1), **settings}
    _, cfg = load(run, tmp_path)
    cfg.model.decode_head.in_channels, cfg.model.auxiliary_head.in_channels = golden.TINY_HEAD_INPUTS
    cfg.model.decode_head.channels, cfg.model.auxiliary_head.channels = 16, 8
    cfg.visualizer.vis_backends = [dict(type="LocalVisBackend")]
    cfg.custom_hooks = [*cfg.get("custom_hooks", []), dict(type="PrecisionProbeHook")]
    cfg.dump(str(tmp_path / "config.py"))
    golden.seed_everything(golden.SEED)
    PROBE.clear()
    train(tmp_path / "config.py", tmp_path / "work", cfg=cfg)
    return dict(PROBE)


def test_bf16_trains_in_bfloat16_on_the_cpu(tmp_path, cpu_only):
    probe = train_tiny(tmp_path, amp="bf16")
    assert probe["dtypes"] == {torch.bfloat16}
    assert len(probe["losses"]) == 6 and all(math.isfinite(loss) for loss in probe["losses"])
    assert probe["nhwc_inputs"] == {False} and probe["nhwc_weights"] == {False}


def test_channels_last_trains_with_nhwc_weights_and_batches(tmp_path, cpu_only):
    probe = train_tiny(tmp_path, channels_last=True)
    assert probe["nhwc_weights"] == {True} and probe["nhwc_inputs"] == {True}
    assert probe["dtypes"] == {torch.float32}  # amp false: fp32
    assert len(probe["losses"]) == 6 and all(math.isfinite(loss) for loss in probe["losses"])
