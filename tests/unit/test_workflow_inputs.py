"""Input declaration, `workflow run` argument parsing and coercion — the pure functions, in-process."""

from __future__ import annotations

import enum
import json
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from mixtrain import MixFlow, mixparam
from mixtrain.cli import run_options as cliargs
from mixtrain.errors import InvalidInput
from mixtrain.workflows.runner import validate_inputs
from mixtrain.workflows.spec import coerce, extract
from mixtrain.workflows.worker import call_flow


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.Enum):
    LOW = 1
    HIGH = 2


class AttrFlow(MixFlow):
    """Attribute style.

    Second paragraph is not the summary.
    """

    _mixflow_gpu = "a100"
    _mixflow_timeout = 60

    dataset_name: str = mixparam(description="Name of mixtrain dataset")
    num_epochs: int = mixparam(default=3, description="Number of training epochs")
    learning_rate: float = mixparam(default=2e-5, description="Learning rate")
    use_flash_attention: bool = mixparam(default=True, description="Use FlashAttention-2")
    model_type: Literal["llava", "qwen2_vl", "phi3_v"] = mixparam(default="llava", description="Architecture")
    deepspeed_config: str = mixparam(default="", description="DeepSpeed stage", choices=["", "zero2", "zero3"])
    color: Color = mixparam(default=Color.RED, description="An enum")
    level: Level = mixparam(default=Level.LOW, description="An int enum")
    tags: list = mixparam(default=[], description="Tags")
    extra: dict = mixparam(default={}, description="Extra")

    def run(self):
        return {k: getattr(self, k) for k in ("dataset_name", "num_epochs", "color", "level", "use_flash_attention")}


class SigFlow(MixFlow):
    def setup(self, inputs):
        self.seen_setup = dict(inputs)

    def run(
        self,
        name: str,
        n: int = 2,
        ratio: float = 0.5,
        flag: bool = False,
        color: Color = Color.BLUE,
        items: list | None = None,
        opts: dict | None = None,
        described: int = mixparam(default=7, description="Seven"),
    ):
        return {
            "name": name,
            "n": n,
            "ratio": ratio,
            "flag": flag,
            "color": color,
            "items": items,
            "opts": opts,
            "described": described,
            "setup": self.seen_setup,
        }


ATTR = extract(AttrFlow)
SIG = extract(SigFlow)


def by_name(spec):
    return {i["name"]: i for i in spec["inputs"]}


def test_attribute_spec():
    s = by_name(ATTR)
    assert ATTR["entrypoint"] == "AttrFlow"
    assert ATTR["doc"].splitlines()[0] == "Attribute style."
    assert ATTR["resources"] == {"gpu": "a100", "memory": None, "timeout": 60, "cpu": None}
    assert s["dataset_name"] == {
        "name": "dataset_name",
        "type": "str",
        "required": True,
        "default": None,
        "description": "Name of mixtrain dataset",
        "choices": None,
        "style": "attribute",
        "ge": None,
        "gt": None,
        "le": None,
        "lt": None,
    }
    assert (s["num_epochs"]["type"], s["num_epochs"]["default"], s["num_epochs"]["required"]) == ("int", 3, False)
    assert (s["learning_rate"]["type"], s["use_flash_attention"]["type"]) == ("float", "bool")
    assert s["model_type"]["choices"] == ["llava", "qwen2_vl", "phi3_v"]
    assert s["deepspeed_config"]["choices"] == ["", "zero2", "zero3"]
    assert (s["color"]["type"], s["color"]["choices"], s["color"]["default"]) == ("str", ["red", "blue"], "red")
    assert (s["level"]["type"], s["level"]["choices"], s["level"]["default"]) == ("int", [1, 2], 1)
    assert (s["tags"]["type"], s["extra"]["type"]) == ("list", "dict")
    json.dumps(ATTR)  # stored as JSON


def test_signature_spec():
    s = by_name(SIG)
    assert list(s) == ["name", "n", "ratio", "flag", "color", "items", "opts", "described"]
    assert s["name"]["required"] and not s["n"]["required"]
    assert [s[k]["type"] for k in s] == ["str", "int", "float", "bool", "str", "list", "dict", "int"]
    assert s["color"]["choices"] == ["red", "blue"] and s["color"]["default"] == "blue"
    assert s["described"]["description"] == "Seven" and s["described"]["default"] == 7
    assert all(i["style"] == "run" for i in SIG["inputs"])


# -- argument parsing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv,expected",
    [
        (["--name", "x"], {"name": "x"}),
        (["--name=x"], {"name": "x"}),
        (["--name=a=b"], {"name": "a=b"}),
        (["--n", "-3"], {"n": "-3"}),  # a negative number is a value, not a flag
        (["--ratio", "-0.5"], {"ratio": "-0.5"}),
        (["--flag"], {"flag": "true"}),
        (["--flag", "--n", "1"], {"flag": "true", "n": "1"}),
        (["--flag", "false"], {"flag": "false"}),
        (["--flag", "No"], {"flag": "No"}),
        (["--flag", "1"], {"flag": "1"}),
        (["--flag=off"], {"flag": "off"}),
        (["--no-flag"], {"flag": "false"}),
        (["--no_flag"], {"flag": "false"}),
        (["--flag", "--no-flag"], {"flag": "false"}),  # the last one wins
        (["--no-flag", "--flag"], {"flag": "true"}),
        (["--n", "1", "--n", "2"], {"n": "2"}),
    ],
)
def test_parse_forms(argv, expected):
    assert cliargs.parse(argv, SIG).inputs == expected


def test_dash_and_underscore_are_interchangeable():
    a = cliargs.parse(["--dataset-name", "d", "--num_epochs", "2", "--use-flash-attention", "false"], ATTR).inputs
    b = cliargs.parse(["--dataset_name", "d", "--num-epochs", "2", "--use_flash_attention", "false"], ATTR).inputs
    assert a == b == {"dataset_name": "d", "num_epochs": "2", "use_flash_attention": "false"}


def test_json_file_config_and_override(tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"name": "from-file", "n": 5, "items": [1]}))
    for flag in ("-i", "--input-json", "--input_json", "-c", "--config"):
        parsed = cliargs.parse([flag, str(cfg), "--n", "9"], SIG)
        assert parsed.inputs == {"name": "from-file", "n": "9", "items": [1]}
    parsed = cliargs.parse(["--n", "9", "-i", '{"n": 1, "name": "j"}'], SIG)
    assert parsed.inputs == {"n": "9", "name": "j"}, "flags win wherever they stand"
    assert cliargs.parse(['-i={"name": "eq"}'], SIG).inputs == {"name": "eq"}
    assert cliargs.parse(["--config=" + str(cfg)], SIG).inputs["name"] == "from-file"
    assert cliargs.parse(["-i", '{"dataset-name": "d"}'], ATTR).inputs == {"dataset_name": "d"}


def test_detach_and_help_flags():
    assert cliargs.parse(["--name", "x", "-d"], SIG).detach
    assert cliargs.parse(["--detach", "--name", "x"], SIG).detach
    assert cliargs.parse(["-h"], SIG).help and cliargs.parse(["--name", "x", "--help"], SIG).help


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["stray"], "unexpected argument 'stray'"),
        (["--name"], "--name needs a value"),
        (["-i"], "-i needs a value"),
        (["-i", "{oops"], "invalid JSON"),
        (["-i", "[1]"], "neither a JSON object nor a file"),
        (["--no-flag=yes"], "takes no value"),
    ],
)
def test_parse_errors(argv, fragment):
    with pytest.raises(InvalidInput, match=None) as err:
        cliargs.parse(argv, SIG)
    assert fragment in str(err.value)


def test_json_file_must_hold_an_object(tmp_path):
    f = tmp_path / "list.json"
    f.write_text("[1, 2]")
    with pytest.raises(InvalidInput, match="expected a JSON object, got list"):
        cliargs.parse(["-i", str(f)], SIG)


# -- coercion ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "typ,value,from_text,expected",
    [
        ("int", "3", True, 3),
        ("int", " 4 ", True, 4),
        ("int", 5, False, 5),
        ("int", 6.0, False, 6),
        ("float", "2e-5", True, 2e-5),
        ("float", "3", True, 3.0),
        ("float", 1, False, 1.0),
        ("bool", "true", True, True),
        ("bool", "YES", True, True),
        ("bool", "1", True, True),
        ("bool", "no", True, False),
        ("bool", "0", True, False),
        ("bool", "off", True, False),
        ("bool", False, False, False),
        ("bool", 1, False, True),
        ("list", '["a", 1]', True, ["a", 1]),
        ("list", [1, 2], False, [1, 2]),
        ("dict", '{"k": [1]}', True, {"k": [1]}),
        ("str", "hello", True, "hello"),
        ("str", 12, False, "12"),
    ],
)
def test_coerce_ok(typ, value, from_text, expected):
    out = coerce({"name": "x", "type": typ}, value, from_text=from_text)
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize(
    "typ,value,fragment",
    [
        ("int", "three", "expected an integer, got 'three'"),
        ("int", "2.5", "expected an integer"),
        ("int", 2.5, "expected an integer"),
        ("int", True, "expected an integer"),
        ("float", "fast", "expected a number, got 'fast'"),
        ("float", True, "expected a number"),
        ("bool", "maybe", "expected true or false, got 'maybe'"),
        ("bool", 2, "expected true or false"),
        ("list", '{"a": 1}', "expected a JSON list"),
        ("list", "[1,", "expected a JSON list"),
        ("dict", "[1]", "expected a JSON object"),
        ("str", {"a": 1}, "expected a string"),
    ],
)
def test_coerce_errors(typ, value, fragment):
    with pytest.raises(InvalidInput) as err:
        coerce({"name": "x", "type": typ}, value, from_text=True)
    assert f"--x: {fragment}" in str(err.value)
    assert err.value.fix  # every error says what to do


def test_choices():
    s = by_name(ATTR)
    assert coerce(s["model_type"], "qwen2_vl", from_text=True) == "qwen2_vl"
    with pytest.raises(InvalidInput, match="'gpt' is not one of llava, qwen2_vl, phi3_v"):
        coerce(s["model_type"], "gpt", from_text=True)
    assert coerce(s["level"], "2", from_text=True) == 2
    with pytest.raises(InvalidInput, match="not one of 1, 2"):
        coerce(s["level"], "3", from_text=True)


def test_validate_inputs_fills_defaults_and_reports():
    full = validate_inputs(SIG, {"name": "x", "n": "4"}, from_text=True)
    assert full == {
        "name": "x",
        "n": 4,
        "ratio": 0.5,
        "flag": False,
        "color": "blue",
        "items": None,
        "opts": None,
        "described": 7,
    }
    with pytest.raises(InvalidInput, match="missing required input --name"):
        validate_inputs(SIG, {})
    with pytest.raises(InvalidInput) as err:
        validate_inputs(SIG, {"name": "x", "nn": 1, "zz": 2})
    assert "unknown inputs --nn, --zz" in str(err.value) and "available: --name, --n, --ratio" in str(err.value)
    # From the Python API values keep their types; strings are not parsed as JSON there.
    assert validate_inputs(SIG, {"name": "x", "items": [1]})["items"] == [1]


def test_call_flow_hands_over_typed_values_and_enum_members():
    out = call_flow(SigFlow, SIG, validate_inputs(SIG, {"name": "x", "color": "red"}))
    assert out["color"] is Color.RED and out["n"] == 2 and out["setup"]["name"] == "x"
    out = call_flow(AttrFlow, ATTR, validate_inputs(ATTR, {"dataset_name": "d", "level": 2}))
    assert out == {
        "dataset_name": "d",
        "num_epochs": 3,
        "color": Color.RED,
        "level": Level.HIGH,
        "use_flash_attention": True,
    }


# -- bounds and a pydantic model as the one source of inputs ---------------------------------------------
class BoundFlow(MixFlow):
    batch: int = mixparam(default=2, description="Batch", ge=1, le=64)
    frac: float = mixparam(default=0.0, description="Fraction", ge=0, lt=0.5)

    def run(self):
        return self.batch


def test_mixparam_bounds_are_in_the_spec_and_checked():
    s = by_name(extract(BoundFlow))
    assert (s["batch"]["ge"], s["batch"]["le"], s["frac"]["lt"]) == (1, 64, 0.5)
    spec = extract(BoundFlow)
    assert validate_inputs(spec, {"batch": "64", "frac": "0.25"}, from_text=True) == {"batch": 64, "frac": 0.25}
    for given, fragment in [
        ({"batch": "0"}, "--batch: 0 is out of range — use a value ≥ 1, ≤ 64"),
        ({"frac": "0.5"}, "--frac: 0.5 is out of range — use a value ≥ 0, < 0.5"),
    ]:
        with pytest.raises(InvalidInput) as err:
            validate_inputs(spec, given, from_text=True)
        assert str(err.value) == fragment
    with pytest.raises(TypeError, match="minimum"):
        mixparam(default=1, minimum=0)


def test_finetune_inputs_come_from_the_one_schema():
    """The fine-tune workflow declares run(self, params: FinetuneSpec): every field is an input, with
    its description, choices and bounds, and nothing is declared a second time."""
    from pathlib import Path

    from mixtrain.vlm.spec import FinetuneSpec
    from mixtrain.workflows.loader import find_flow, load_module

    example = Path(__file__).resolve().parents[2] / "src/mixtrain/examples/axolotl_vlm_finetune.py"
    spec = extract(find_flow(load_module(example)))
    s = by_name(spec)
    assert list(s) == list(FinetuneSpec.model_fields)
    assert spec["schema"] == "mixtrain.vlm.spec:FinetuneSpec"
    assert all(i["style"] == "model" and i["description"] for i in spec["inputs"])
    assert s["batch_size"]["ge"] == 1 and s["lora_dropout"]["lt"] == 1
    assert s["deepspeed_config"]["choices"] == ["", "zero2", "zero3"] and s["on_bad_image"]["choices"] == [
        "fail",
        "skip",
    ]
    assert s["dataset_name"]["required"] and s["num_epochs"]["default"] == 3
    assert "mixparam" not in example.read_text() and "Field(" not in example.read_text()
    json.dumps(spec)


def test_schema_validation_runs_before_a_run_exists():
    """The CLI process runs the model's own validators (normalisation included) on the inputs."""
    from pathlib import Path

    from mixtrain.workflows.loader import find_flow, load_module

    example = Path(__file__).resolve().parents[2] / "src/mixtrain/examples/axolotl_vlm_finetune.py"
    spec = extract(find_flow(load_module(example)))
    req = {"dataset_name": "d", "output_model_name": "m"}
    full = validate_inputs(
        spec, {**req, "deepspeed_config": " ZeRO3 ", "num_epochs": "5", "use_flash_attention": "no"}, from_text=True
    )
    assert (full["deepspeed_config"], full["num_epochs"], full["use_flash_attention"]) == ("zero3", 5, False)
    for bad, fragment in [
        ({"batch_size": "0"}, "--batch_size: Input should be greater than or equal to 1"),
        ({"output_model_name": "Bad Name"}, "--output_model_name"),
        ({"deepspeed_config": "zero1"}, "zero2, zero3"),
    ]:
        with pytest.raises(InvalidInput) as err:
            validate_inputs(spec, {**req, **bad}, from_text=True)
        assert fragment in str(err.value)


class Params(BaseModel):
    n: int = Field(2, ge=1, description="N")
    name: str = Field(description="Name")


class ModelFlow(MixFlow):
    def run(self, params: Params):
        return {"params": params, "ctx": self.run_context}


def test_a_model_declared_workflow_gets_the_validated_instance():
    spec = extract(ModelFlow)
    assert [i["name"] for i in spec["inputs"]] == ["n", "name"] and spec["inputs"][0]["ge"] == 1
    out = call_flow(ModelFlow, spec, validate_inputs(spec, {"name": "x", "n": "3"}, from_text=True))
    assert isinstance(out["params"], Params) and out["params"].n == 3 and out["ctx"] is None
    with pytest.raises(InvalidInput, match="--n"):
        call_flow(ModelFlow, spec, {"name": "x", "n": 0})
