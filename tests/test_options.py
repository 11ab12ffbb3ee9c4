"""Options are declared once (config.py) and the command line is generated from them: every TrainConfig field is a
`train` and a `cv` flag and a YAML key with the same default, every InferenceOptions field a flag of each command
that scores with a model; YAML < flags given; one set of validation messages. No training, no model loads."""

from __future__ import annotations

import collections
import dataclasses
import re
import subprocess
import sys

import pytest
import typer
import yaml
from typer.testing import CliRunner

from arenapref.cli import app
from arenapref.cli.options import given
from arenapref.config import InferenceOptions, TrainConfig, load_config, options_of
from arenapref.errors import DataError
from arenapref.models import MODELS

COMMANDS = typer.main.get_command(app).commands
SCORING_COMMANDS = ("evaluate", "predict", "label", "serve")


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def params_of(command: str) -> dict:
    return {p.name: p for p in COMMANDS[command].params}


def parse(command: str, args: list) -> dict:
    """The TrainConfig values a command line gives, as `train` hands them to load_config."""
    ctx = COMMANDS[command].make_context(command, [str(a) for a in args])
    return given(TrainConfig, ctx, ("data", "output") if command == "cv" else ())


def test_every_train_option_is_a_flag_with_its_default_help_and_choices():
    defaults = TrainConfig()
    params = params_of("train")
    for f in dataclasses.fields(TrainConfig):
        param = params[f.name]
        assert param.opts == [flag(f.name)], f.name
        default = getattr(defaults, f.name)
        assert (list(param.default) if param.multiple else param.default) == default, f.name
        assert param.help == f.metadata["help"] and param.help, f.name
        if isinstance(default, bool) and default:  # a switch on by default can be turned off
            assert param.secondary_opts == [f"--no-{flag(f.name)[2:]}"], f.name
        if f.metadata["choices"]:
            assert param.metavar == f"[{'|'.join(f.metadata['choices'])}]", f.name
    assert set(params) == {f.name for f in dataclasses.fields(TrainConfig)} | {"config"}


def test_every_train_option_is_a_yaml_key_with_the_same_default(tmp_path):
    """All fields in one file, at their defaults, half of them spelled with - and half with _: nothing changes."""
    required = {"data": "d.csv", "output": str(tmp_path / "m")}
    values = {k: v for k, v in dataclasses.asdict(TrainConfig()).items() if k not in required}
    keys = {(k.replace("_", "-") if i % 2 else k): v for i, (k, v) in enumerate(values.items())}
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(keys), encoding="utf-8")
    assert load_config(path, required) == load_config(None, required) == TrainConfig(**required).validate()
    # and no flag given means no override: the file stands
    assert parse("train", []) == {}


def test_train_help_lists_each_option_once():
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    rows = re.findall(r"^│\s+(--[a-z0-9-]+)", result.output, flags=re.M)
    counts = collections.Counter(rows)
    expected = {flag(f.name) for f in dataclasses.fields(TrainConfig)} | {"--config", "--help"}
    assert set(counts) == expected and set(counts.values()) == {1}, counts
    for default in ("[default: 0.15]", "[default: hybrid]", "[default: probe]", "[default: 0.2,0.4,0.4]"):
        assert default in result.output


def test_cv_takes_every_train_option_besides_its_own():
    train, cv = params_of("train"), params_of("cv")
    assert set(train) <= set(cv)
    for name, param in train.items():
        if name not in ("data", "output"):  # cv's own, required
            assert (cv[name].opts, cv[name].secondary_opts, cv[name].default) == \
                (param.opts, param.secondary_opts, param.default), name
    assert cv["data"].required and cv["output"].required
    assert {"folds", "keep_models", "as_json"} <= set(cv)
    opts = [o for p in COMMANDS["cv"].params for o in p.opts + p.secondary_opts]
    assert len(opts) == len(set(opts))
    assert parse("cv", ["--data", "d.csv", "--output", "o", "--model", "gbdt", "--gbdt-rounds", "30",
                        "--no-gbdt-refit"]) == {"model": "gbdt", "gbdt_rounds": 30, "gbdt_refit": False}


@pytest.mark.parametrize("command", SCORING_COMMANDS)
def test_inference_options_are_flags_of_every_scoring_command(command):
    defaults = InferenceOptions()
    params = params_of(command)
    for f in dataclasses.fields(InferenceOptions):
        assert params[f.name].opts == [flag(f.name)] and params[f.name].default == getattr(defaults, f.name)
        assert params[f.name].help == f.metadata["help"]


def test_yaml_then_flags_given(tmp_path):
    """defaults < YAML < flags given on the command line, even a flag equal to the default, and bool switches."""
    path = tmp_path / "cfg.yaml"
    path.write_text("model: dual-tower\nmax-length: 40\nbatch_size: 16\nseed: 3\nprobe: false\nweight-decay: 0.1\n",
                    encoding="utf-8")
    flags = parse("train", ["--data", "d.csv", "--output", tmp_path / "m", "--max-length", 32, "--seed", 42,
                            "--probe", "--eval-batch-size", 8, "--extra", "a.csv", "--extra", "b.csv"])
    assert flags["output"] == str(tmp_path / "m") and flags["extra"] == ["a.csv", "b.csv"]
    cfg = load_config(path, flags)
    assert (cfg.model, cfg.max_length, cfg.batch_size, cfg.seed, cfg.probe) == ("dual-tower", 32, 16, 42, True)
    assert (cfg.weight_decay, cfg.eval_batch_size, cfg.extra) == (0.1, 8, ["a.csv", "b.csv"])
    assert load_config(path, parse("train", ["--data", "d.csv", "--output", "o"])).probe is False


def test_usage_errors_of_train_and_cv_are_one_line():
    with pytest.raises(DataError, match=r"^cv: .*--gbdt-rounds.*; see `arenapref cv --help`$"):
        parse("cv", ["--data", "d.csv", "--output", "o", "--gbdt-rounds", "many"])
    with pytest.raises(DataError, match=r"^train: .*--no-such-flag"):
        parse("train", ["--no-such-flag"])


def test_options_of_follows_the_families_metadata():
    every = options_of("no-such-family")
    assert every == {"data", "output", "valid", "valid_fraction", "extra", "extra_exclude", "model", "seed", "resume"}
    for neural in ("dual-tower", "cross-encoder", "llm"):
        assert options_of("hybrid", neural) == options_of("gbdt") | options_of(neural) | {"hybrid_neural",
                                                                                          "hybrid_weight"}
    # The one option the gbdt and the neural heads share: the style term (both fit one).
    assert (options_of("gbdt") - every) & (options_of("dual-tower") - every) == {"style_term"}
    assert {"lora_r", "gguf_file"} <= options_of("llm") - options_of("cross-encoder")
    read = set().union(*(options_of(m, "llm") for m in MODELS), options_of("hybrid", "cross-encoder"))
    assert read == {f.name for f in dataclasses.fields(TrainConfig)}  # every option is read by some family


@pytest.mark.parametrize("values, message", [
    ({"quantize": "int4"}, "--quantize 'int4': expected none or int8"),
    ({"dtype": "fp64"}, "--dtype 'fp64': expected fp32, bf16 or fp16"),
    ({"quantize": "int8", "dtype": "bf16"}, "--quantize int8 quantizes the fp32 model"),
    ({"workers": 0}, "--workers must be at least 1, got 0"),
    ({"batch_tokens": 0}, "--batch-tokens must be at least 1, got 0"),
    ({"style": "neutral"}, "--style 'neutral': expected as-voted or controlled"),
    ({"neural_fraction": 1.5}, "--neural-fraction must be between 0 and 1, got 1.5"),
    ({"tta_fraction": -0.1}, "--tta-fraction must be between 0 and 1, got -0.1"),
    ({"cascade_by": "gini"}, "--cascade-by 'gini': expected entropy or margin"),
])
def test_inference_options_are_validated_once(values, message):
    with pytest.raises(DataError, match=re.escape(message)):
        InferenceOptions(**values).validate()


def test_inference_options_become_from_pretrained_arguments_and_refuse_gbdt():
    options = InferenceOptions(quantize="int8", batch_tokens=512, workers=2).validate()
    assert options.load_kwargs() == {"dtype": "fp32", "quantize": "int8", "max_tokens": 512, "workers": 2,
                                     "neural_fraction": 1.0, "tta_fraction": 1.0, "cascade_by": "entropy",
                                     "style": "as-voted"}
    assert InferenceOptions().load_kwargs()["quantize"] is None
    options.check_applies("dual-tower", "m")
    InferenceOptions().check_applies("gbdt", "m")  # nothing set: nothing to refuse
    InferenceOptions(style="controlled").check_applies("gbdt", "m")  # a gbdt's style term is what --style reads
    with pytest.raises(DataError, match="--batch-tokens applies to neural models; m is a gbdt model"):
        InferenceOptions(batch_tokens=512).check_applies("gbdt", "m")
    InferenceOptions(neural_fraction=0.25, batch_tokens=512).check_applies("hybrid", "m")
    InferenceOptions(tta_fraction=0.25).check_applies("gbdt", "m")  # every family has a swapped pass
    with pytest.raises(DataError, match="--neural-fraction applies to the hybrid's cascade .* m is a dual-tower model"):
        InferenceOptions(neural_fraction=0.5).check_applies("dual-tower", "m")
    with pytest.raises(DataError, match="--cascade-by ranks rows for --neural-fraction or --tta-fraction"):
        InferenceOptions(cascade_by="margin").check_applies("hybrid", "m")


def test_the_command_line_loads_without_torch():
    code = ("import sys, typer; from arenapref.cli import app; typer.main.get_command(app); "
            "assert not {'torch', 'transformers'} & set(sys.modules), 'torch or transformers imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
