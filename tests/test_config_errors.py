"""A config that breaks the schema fails with one short line per error: the file,
the dotted key, the bad value and what is allowed (not Snakemake's dump of schema
and config)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, WORKFLOW_FILES, run_snakemake

sys.path.insert(0, str(REPO / "scripts"))
from common.config_errors import ConfigSchemaError, validate_config  # noqa: E402

SCHEMA = REPO / "config/schemas/config.schema.yaml"


def write(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def schema_error(tmp_path, *layers, command_line=None) -> str:
    """The message of validating the merge of ``layers`` (one config file each, in order)."""
    files, config = [], {}
    for i, layer in enumerate(layers):
        files.append(write(tmp_path / f"layer{i}.yaml", layer))
        merge(config, yaml.safe_load(yaml.safe_dump(layer)))
    if command_line:
        merge(config, command_line)
    with pytest.raises(ConfigSchemaError) as error:
        validate_config(config, SCHEMA, files, command_line)
    return str(error.value)


def merge(config, layer):
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            merge(config[key], value)
        else:
            config[key] = value


@pytest.mark.parametrize(
    "layer, expected",
    [
        ({"trainig": {"gpus": 1}}, "layer0.yaml: unknown key 'trainig' (did you mean 'training'?)"),
        ({"training": {"base_lrr": 0.1}}, "layer0.yaml: unknown key 'training.base_lrr' (did you mean 'training.base_lr'?)"),
        ({"variants": {"v": {"trainsets": []}}},
         "layer0.yaml: unknown key 'variants.v.trainsets' (did you mean 'variants.v.train_sets'?)"),
        ({"training": {"augment": {"flipp": False}}},
         "layer0.yaml: unknown key 'training.augment.flipp' (did you mean 'training.augment.flip'?)"),
        ({"training": {"gpus": "two"}}, "layer0.yaml: training.gpus is 'two', a string; it must be an integer"),
        ({"data": {"sbd": {"md5": 12345}}},
         "layer0.yaml: data.sbd.md5 is 12345, an integer; it must be a string or null"),
        ({"training": {"gpus": 0}}, "layer0.yaml: training.gpus is 0; it must be at least 1"),
        ({"training": {"base_lr": 0}}, "layer0.yaml: training.base_lr is 0; it must be more than 0"),
        ({"report": {"qualitative_count": 50}}, "layer0.yaml: report.qualitative_count is 50; it must be at most 20"),
        ({"training": {"backbone": "resnt"}},
         "layer0.yaml: training.backbone is 'resnt'; it must be one of resnet, swin, convnext (did you mean 'resnet'?)"),
        ({"variants": {"v": {"train_sets": [{"split": "trian", "labels": "SegmentationClass"}]}}},
         "layer0.yaml: variants.v.train_sets[0].split is 'trian'; it must be one of train, val, trainaug, aug, "
         "train_sbd (did you mean 'train'?)"),
        ({"seeds": []}, "layer0.yaml: seeds is []; it must have at least 1 item"),
        ({"variants": {"a b": {}}}, "layer0.yaml: variants: the name 'a b' must match ^[A-Za-z0-9][A-Za-z0-9_-]*$"),
    ],
    ids=["unknown-top", "unknown-nested", "unknown-in-variant", "unknown-in-ref", "type", "type-or-null",
         "minimum", "exclusive-minimum", "maximum", "enum", "enum-in-list", "min-items", "property-name"],
)  # fmt: skip
def test_a_schema_error_is_one_line_naming_file_key_value_and_what_is_allowed(
    tmp_path, layer, expected
):
    message = schema_error(tmp_path, layer)
    assert message == f"{tmp_path}/{expected}", message


def test_an_unknown_key_without_a_near_name_lists_the_known_ones(tmp_path):
    message = schema_error(tmp_path, {"evaluation": {"zzz": 1}})
    assert message.endswith(
        "unknown key 'evaluation.zzz' (known keys: tta, ood, train_sample, sample_seed)"
    ), message


def test_the_error_names_the_file_that_holds_the_key_among_merged_files(tmp_path):
    message = schema_error(tmp_path, {"seeds": [0]}, {"training": {"gpus": 0}}, {"epochs": [1]})
    assert (
        message == f"{tmp_path / 'layer1.yaml'}: training.gpus is 0; it must be at least 1"
    ), message
    # a value set twice: the file whose value wins
    message = schema_error(tmp_path, {"training": {"gpus": 0}}, {"training": {"gpus": "x"}})
    assert message.startswith(f"{tmp_path / 'layer1.yaml'}: training.gpus is 'x'"), message
    # an unknown key in two files: both
    message = schema_error(tmp_path, {"trainig": {}}, {"seeds": [0]}, {"trainig": {"gpus": 1}})
    assert message.startswith(
        f"{tmp_path / 'layer0.yaml'}, {tmp_path / 'layer2.yaml'}: unknown key 'trainig'"
    ), message


def test_a_value_from_the_command_line_is_named_as_such(tmp_path):
    message = schema_error(tmp_path, {"seeds": [0]}, command_line={"training": {"gpus": -1}})
    assert message == "--config: training.gpus is -1; it must be at least 1", message


def test_every_error_gets_its_own_line(tmp_path):
    message = schema_error(tmp_path, {"trainig": {}, "seeds": [-1]})
    assert message.splitlines() == [
        f"{tmp_path / 'layer0.yaml'}: seeds[0] is -1; it must be at least 0",
        f"{tmp_path / 'layer0.yaml'}: unknown key 'trainig' (did you mean 'training'?)",
    ], message


def test_a_valid_config_gets_the_schema_defaults(tmp_path):
    config = {"training": {"gpus": 1}}
    validate_config(config, SCHEMA, [write(tmp_path / "ok.yaml", config)])
    assert config["training"]["gpus"] == 1 and config["training"]["batch_per_gpu"] == 8
    assert config["data"]["voc"]["archive"] is None and "vocaug" in config["variants"]


@pytest.fixture
def workflow_files(tmp_path):
    """The workflow alone (no data): enough to plan until the config is validated."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize(
    "text, expected",
    [
        ("seeds: [0]\ntrainig:\n  gpus: 1\n", "config/my.yaml: unknown key 'trainig' (did you mean 'training'?)"),
        ("training:\n  base_lrr: 0.1\n",
         "config/my.yaml: unknown key 'training.base_lrr' (did you mean 'training.base_lr'?)"),
        ("training:\n  loss: dice\n",
         "config/my.yaml: training.loss is 'dice'; it must be one of cross_entropy, focal"),
    ],
    ids=["unknown-key", "unknown-nested-key", "not-allowed"],
)  # fmt: skip
def test_snakemake_and_check_config_report_a_schema_error_in_one_short_message(
    workflow_files, text, expected
):
    (workflow_files / "config/my.yaml").write_text(text)
    result = run_snakemake(workflow_files, "-n", "--configfile", "config/my.yaml")
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert expected in output, output[-3000:]
    assert len(output.splitlines()) < 30 and "additionalProperties" not in output, output[-3000:]

    checked = subprocess.run(
        [sys.executable, str(REPO / "tools/check_config.py"), "config/my.yaml"],
        cwd=workflow_files, capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stderr.strip() == expected and "ok" not in checked.stdout, (
        checked.stdout + checked.stderr
    )


def test_check_config_still_says_ok_for_the_shipped_configs():
    configs = [
        "config/config.yaml",
        "config/demo.yaml",
        "config/attribution.yaml",
        "config/references.yaml",
    ]
    checked = subprocess.run(
        [sys.executable, str(REPO / "tools/check_config.py"), *configs],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == [f"{path}: ok" for path in configs]
