"""Step 2 of the fine-tune — the strict spec, the model families and the generated Axolotl config.

The Axolotl YAML (and our DeepSpeed JSON) is pinned per family and option by golden files in
``golden/``: a change to the generated config shows up as a reviewable diff. Regenerate them with
``MIXTRAIN_UPDATE_GOLDEN=1 pytest tests/unit/test_vlm_config.py`` and read the diff before committing.
The goldens use placeholder paths (/runs/1/...); one test writes the same configs with real paths and a
real tiny model and runs Axolotl's own validation on all of them in a single subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from mixtrain.errors import InvalidInput
from mixtrain.hardware import Hardware
from mixtrain.vlm import configure, families
from mixtrain.vlm.spec import FinetuneSpec, parse_spec

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("MIXTRAIN_UPDATE_GOLDEN") == "1"
RUN = Path("/runs/1")  # placeholder run folder: goldens must not depend on the machine

CPU = Hardware.cpu()
A100 = Hardware(cuda=True, n_gpu=1, bf16=True, tf32=True, flash_attn=True, gpu_name="NVIDIA A100-SXM4-80GB")
GPU_NO_FA = Hardware(cuda=True, n_gpu=1, bf16=True, tf32=True, flash_attn=False, gpu_name="NVIDIA A100-SXM4-80GB")
# flash_attn installed, but the GPU predates Ampere: FlashAttention-2 cannot run there.
V100 = Hardware(cuda=True, n_gpu=1, bf16=False, tf32=False, flash_attn=True, gpu_name="Tesla V100-SXM2-32GB")

# What Axolotl's validation would detect on those machines (axolotl.cli.config.gpu_capabilities).
CAPABILITIES = {
    A100: {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "compute_capability": "sm_80"},
    GPU_NO_FA: {"bf16": True, "fp8": False, "tf32": True, "n_gpu": 1, "compute_capability": "sm_80"},
    V100: {"bf16": False, "fp8": False, "tf32": False, "n_gpu": 1, "compute_capability": "sm_70"},
}

BASE_MODELS = {
    "llava": "llava-hf/llava-1.5-7b-hf",
    "llava_next": "llava-hf/llava-v1.6-vicuna-7b-hf",
    "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
}
LM_ONLY = r"model\.language_model\.layers\.\d+\.(mlp|self_attn)\.(up|down|gate|q|k|v|o)_proj"


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    hw: Hardware
    params: dict = field(default_factory=dict)
    wandb_online: bool = False
    warnings: tuple[str, ...] = ()  # substrings, one per expected warning

    def spec(self, base_model: str | None = None) -> FinetuneSpec:
        return parse_spec(
            {
                "dataset_name": "my-vlm-data",
                "output_model_name": "my-finetuned-llava",
                "base_model": base_model or BASE_MODELS[self.family],
                "model_type": self.family,
                **self.params,
            }
        )


NO_CUDA = "FlashAttention-2 needs a CUDA GPU"
CASES = [
    Case("cpu_llava", "llava", CPU, warnings=(NO_CUDA,)),
    Case("cpu_llava_next", "llava_next", CPU, warnings=(NO_CUDA,)),
    Case("cpu_qwen2_vl", "qwen2_vl", CPU, warnings=(NO_CUDA,)),
    Case("cpu_llava_no_flash", "llava", CPU, {"use_flash_attention": False}),
    Case("cpu_llava_max_steps", "llava", CPU, {"max_steps": 8}, warnings=(NO_CUDA,)),
    Case("a100_llava_flash", "llava", A100),
    Case("a100_llava_sdpa", "llava", A100, {"use_flash_attention": False}),
    Case("a100_qwen2_vl", "qwen2_vl", A100),
    Case("gpu_llava_no_flash_attn_pkg", "llava", GPU_NO_FA, warnings=("flash_attn is not installed",)),
    Case("v100_llava", "llava", V100, warnings=("Ampere or newer",)),
    Case("a100_llava_zero2", "llava", A100, {"deepspeed_config": "zero2"}),
    Case("a100_llava_zero3", "llava", A100, {"deepspeed_config": "zero3"}),
    Case("a100_llava_wandb_online", "llava", A100, {"wandb_project": "my-vlm-experiments"}, wandb_online=True),
    Case("a100_llava_wandb_offline", "llava", A100, {"wandb_project": "my-vlm-experiments"}, wandb_online=False),
    # Training modes (#19 §2): QLoRA's 4-bit load with the vision side unquantized, full fine-tuning's unfrozen
    # language model, and each --train_vision as LoRA targets / modules_to_save / unfrozen prefixes.
    Case("cpu_llava_qlora", "llava", CPU, {"adapter": "qlora"}, warnings=(NO_CUDA,)),
    Case("a100_qwen2_vl_qlora_vision_lora", "qwen2_vl", A100, {"adapter": "qlora", "train_vision": "lora"}),
    Case("a100_llava_projector", "llava", A100, {"train_vision": "projector"}),
    Case("a100_llava_vision_full", "llava", A100, {"train_vision": "full"}),
    Case("a100_llava_full", "llava", A100, {"adapter": "full"}),
    Case("a100_qwen2_vl_full_projector", "qwen2_vl", A100, {"adapter": "full", "train_vision": "projector"}),
    Case("a100_llava_full_vision_full", "llava", A100, {"adapter": "full", "train_vision": "full"}),
    # The spec's "Advanced Example (with DeepSpeed and W&B)", word for word.
    Case(
        "a100_spec_advanced_example",
        "llava",
        A100,
        {
            "num_epochs": 5,
            "batch_size": 4,
            "learning_rate": 0.00002,
            "gradient_accumulation_steps": 8,
            "lora_r": 128,
            "lora_alpha": 32,
            "deepspeed_config": "zero2",
            "wandb_project": "my-vlm-experiments",
            "use_flash_attention": True,
        },
        wandb_online=True,
    ),
]
BY_NAME = {c.name: c for c in CASES}


def build(case: Case, *, base_model: str | None = None, run: Path = RUN) -> tuple[dict, list[str]]:
    spec = case.spec(base_model)
    warnings: list[str] = []
    ds_json = run / f"deepspeed_{spec.deepspeed_config}.json" if spec.deepspeed_config else None
    cfg = configure.build_config(
        spec,
        families.get_family(case.family),
        case.hw,
        train_jsonl=run / "train.jsonl",
        output_dir=run / "output",
        run_dir=run,
        deepspeed_json=ds_json,
        wandb_run_name="my-finetuned-llava-run1",
        wandb_online=case.wandb_online,
        warn=warnings.append,
    )
    return cfg, warnings


def check_golden(name: str, text: str, parse) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.is_file(), f"no golden {path}: run with MIXTRAIN_UPDATE_GOLDEN=1 and review it"
    assert parse(text) == parse(path.read_text()), (
        f"{name} differs from its golden; if intended, regenerate with MIXTRAIN_UPDATE_GOLDEN=1 and review the diff"
    )


# ---------------------------------------------------------------------------------------------------------
# Golden files
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_config_matches_golden(case, tmp_path):
    cfg, warnings = build(case)
    text = configure.write_yaml(cfg, tmp_path / "axolotl.yml").read_text()  # exactly what the run writes
    assert yaml.safe_load(text) == cfg  # the YAML round-trips
    check_golden(f"{case.name}.yml", text, yaml.safe_load)
    assert len(warnings) == len(case.warnings), warnings
    for want, got in zip(case.warnings, warnings, strict=False):
        assert want in got


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_json_matches_golden(stage, tmp_path):
    text = configure.write_deepspeed(stage, tmp_path / "ds.json").read_text()
    check_golden(f"deepspeed_{stage}.json", text, json.loads)
    ds = json.loads(text)
    assert ds["zero_optimization"]["stage"] == int(stage[-1])
    # The HF trainer fills these from the Axolotl config, so the two can never disagree.
    for key in (
        "train_batch_size",
        "train_micro_batch_size_per_gpu",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        assert ds[key] == "auto"
    assert ds["bf16"]["enabled"] == ds["fp16"]["enabled"] == "auto"


def test_every_golden_file_belongs_to_a_case():
    expected = {f"{c.name}.yml" for c in CASES} | {"deepspeed_zero2.json", "deepspeed_zero3.json"}
    assert {p.name for p in GOLDEN.iterdir()} == expected


# ---------------------------------------------------------------------------------------------------------
# What the goldens must say (so a regenerated golden cannot quietly pin a wrong config)
# ---------------------------------------------------------------------------------------------------------


def test_spec_defaults_reach_axolotl_keys():
    cfg, _ = build(BY_NAME["cpu_llava"])
    assert cfg["base_model"] == "llava-hf/llava-1.5-7b-hf"
    assert cfg["adapter"] == "lora"
    assert (cfg["lora_r"], cfg["lora_alpha"], cfg["lora_dropout"]) == (64, 16, 0.05)
    assert cfg["learning_rate"] == 2e-5
    assert cfg["num_epochs"] == 3
    assert cfg["micro_batch_size"] == 2
    assert cfg["gradient_accumulation_steps"] == 4
    assert cfg["sequence_len"] == 2048
    assert "max_steps" not in cfg and cfg["save_strategy"] == "epoch"


def test_spec_advanced_example_reaches_axolotl_keys():
    cfg, _ = build(BY_NAME["a100_spec_advanced_example"])
    assert (cfg["num_epochs"], cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]) == (5, 4, 8)
    assert (cfg["lora_r"], cfg["lora_alpha"], cfg["learning_rate"]) == (128, 32, 2e-5)
    assert cfg["deepspeed"] == "/runs/1/deepspeed_zero2.json"
    assert cfg["wandb_project"] == "my-vlm-experiments"
    assert cfg["attn_implementation"] == "flash_attention_2"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_multimodal_essentials_in_every_config(case):
    cfg, _ = build(case)
    assert cfg["processor_type"] == "AutoProcessor"
    assert cfg["skip_prepare_dataset"] is True
    assert cfg["remove_unused_columns"] is False
    assert cfg["sample_packing"] is False
    assert cfg["datasets"] == [
        {"path": "/runs/1/train.jsonl", "ds_type": "json", "type": "chat_template", "field_messages": "messages"}
    ]
    assert cfg["dataset_prepared_path"] == "/runs/1/prepared"  # else Axolotl litters the CWD
    assert cfg["output_dir"] == "/runs/1/output"
    spec = case.spec()
    if spec.adapter == "full":
        assert "lora_target_modules" not in cfg and "adapter" not in cfg
    elif spec.train_vision == "lora":
        assert cfg["lora_target_modules"].startswith(f"(?:{LM_ONLY})|")
    else:
        assert cfg["lora_target_modules"] == LM_ONLY  # language model only, every family
    # Left unset, Axolotl auto-enables its fused LoRA kernels on GPU, which cannot load these models.
    assert (cfg["lora_mlp_kernel"], cfg["lora_qkv_kernel"], cfg["lora_o_kernel"]) == (False, False, False)
    assert cfg["trust_remote_code"] is False


@pytest.mark.parametrize("name", ["cpu_llava", "cpu_llava_next"])
def test_llava_families_use_the_eos_template_and_answer_boundary(name):
    cfg, _ = build(BY_NAME[name])
    assert cfg["chat_template"] == "jinja"
    assert "eos_token" in cfg["chat_template_jinja"] and "{% generation %}" in cfg["chat_template_jinja"]
    assert cfg["role_boundaries"] == [{"role": "assistant", "start": " ASSISTANT:", "end": "eos_token"}]


def test_qwen_uses_axolotls_builtin_template_without_boundaries():
    cfg, _ = build(BY_NAME["cpu_qwen2_vl"])
    assert cfg["chat_template"] == "qwen2_vl"
    assert "chat_template_jinja" not in cfg and "role_boundaries" not in cfg


@pytest.mark.parametrize(
    "name", ["cpu_llava", "cpu_llava_next", "cpu_qwen2_vl", "cpu_llava_no_flash", "cpu_llava_max_steps"]
)
def test_cpu_settings(name):
    cfg, _ = build(BY_NAME[name])
    assert (cfg["bf16"], cfg["fp16"], cfg["tf32"]) == (False, False, False)
    assert cfg["attn_implementation"] == "sdpa"
    assert cfg["gradient_checkpointing"] is False
    assert cfg["processor_kwargs"] == {"use_fast": False}  # torchvision.io cannot decode beside CPU-only torch


@pytest.mark.parametrize(
    "name, attn, bf16, fp16, tf32",
    [
        ("a100_llava_flash", "flash_attention_2", "auto", False, True),
        ("a100_qwen2_vl", "flash_attention_2", "auto", False, True),
        ("a100_llava_sdpa", "sdpa", "auto", False, True),
        ("gpu_llava_no_flash_attn_pkg", "sdpa", "auto", False, True),
        ("v100_llava", "sdpa", False, True, False),
    ],
)
def test_gpu_precision_and_attention(name, attn, bf16, fp16, tf32):
    cfg, _ = build(BY_NAME[name])
    assert cfg["attn_implementation"] == attn
    assert (cfg["bf16"], cfg["fp16"], cfg["tf32"]) == (bf16, fp16, tf32)
    assert cfg["gradient_checkpointing"] is True
    assert cfg["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    assert "processor_kwargs" not in cfg  # the fast image processors work with CUDA torchvision


def test_max_steps_saves_at_the_last_step():
    cfg, _ = build(BY_NAME["cpu_llava_max_steps"])
    assert (cfg["max_steps"], cfg["save_strategy"], cfg["save_steps"]) == (8, "steps", 8)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_deepspeed_key_points_at_our_json(stage):
    cfg, _ = build(BY_NAME[f"a100_llava_{stage}"])
    assert cfg["deepspeed"] == f"/runs/1/deepspeed_{stage}.json"
    assert "deepspeed" not in build(BY_NAME["a100_llava_flash"])[0]


@pytest.mark.parametrize("name, mode", [("a100_llava_wandb_online", "online"), ("a100_llava_wandb_offline", "offline")])
def test_wandb_keys_and_no_secret(name, mode, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret-0123456789")
    cfg, _ = build(BY_NAME[name])
    assert {k: v for k, v in cfg.items() if k.startswith("wandb")} == {
        "wandb_project": "my-vlm-experiments",
        "wandb_name": "my-finetuned-llava-run1",
        "wandb_mode": mode,
    }
    text = configure.write_yaml(cfg, tmp_path / "a.yml").read_text()
    assert "wandb-secret" not in text and "api_key" not in text.lower()


def test_no_wandb_keys_without_a_project():
    cfg, _ = build(BY_NAME["a100_llava_flash"])
    assert not [k for k in cfg if k.startswith("wandb")]


def test_wandb_name_defaults_to_the_model_name():
    case = BY_NAME["a100_llava_wandb_offline"]
    cfg = configure.build_config(
        case.spec(),
        families.get_family("llava"),
        A100,
        train_jsonl=RUN / "t.jsonl",
        output_dir=RUN / "o",
        run_dir=RUN,
        warn=lambda m: None,
    )
    assert cfg["wandb_name"] == "my-finetuned-llava"


# ---------------------------------------------------------------------------------------------------------
# Axolotl's own validation of every config above (one subprocess: Axolotl's import is the slow part)
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "llava"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mixtrain.testing.tiny_vlm", "--family", "llava", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def test_axolotl_accepts_every_config(tiny_llava, tmp_path):
    """Every golden case, with real paths, passes Axolotl's schema without a dropped key.

    CPU configs go through ``load_cfg`` on this machine, exactly as ``--dry_run`` does; GPU configs are
    validated against the capabilities of the machine they are for. The qwen2_vl configs point at the tiny
    LLaVA: validation reads only the model's config, and nothing in it is family-specific.
    """
    args: list[str] = []
    expected: list[str] = []
    for hw in (CPU, A100, GPU_NO_FA, V100):
        args.append("--capabilities=" + (json.dumps(CAPABILITIES[hw]) if hw.cuda else ""))
        for case in (c for c in CASES if c.hw == hw):
            run = tmp_path / case.name
            run.mkdir()
            cfg, _ = build(case, base_model=str(tiny_llava), run=run)
            (run / "train.jsonl").write_text("")
            if "deepspeed" in cfg:
                configure.write_deepspeed(case.spec().deepspeed_config, Path(cfg["deepspeed"]))
            path = configure.write_yaml(cfg, run / "axolotl.yml")
            args.append(str(path))
            expected.append(str(path))
    assert len(expected) == len(CASES)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "AXOLOTL_DO_NOT_TRACK": "1", "WANDB_MODE": "disabled"}
    env.pop("MIXTRAIN_VALIDATE_CAPABILITIES", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mixtrain.vlm.axolotl_main", "validate", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for path in expected:
        assert f"axolotl config OK: {path}" in proc.stdout, out[-6000:]
    # Left to itself Axolotl switches on fused LoRA kernels that cannot load these models on a GPU.
    assert "Auto-enabling LoRA kernel" not in out
    assert not (tmp_path / "last_run_prepared").exists()


# ---------------------------------------------------------------------------------------------------------
# The strict spec
# ---------------------------------------------------------------------------------------------------------

REQUIRED = {"dataset_name": "my-vlm-data", "output_model_name": "my-model"}


def problems(params: dict) -> str:
    with pytest.raises(InvalidInput) as err:
        parse_spec(params)
    return str(err.value)


def test_spec_defaults_equal_the_spec_tables():
    spec = parse_spec(REQUIRED)
    assert spec.model_dump(
        include={
            "base_model",
            "model_type",
            "num_epochs",
            "batch_size",
            "learning_rate",
            "gradient_accumulation_steps",
            "max_seq_length",
            "lora_r",
            "lora_alpha",
            "lora_dropout",
            "use_flash_attention",
            "deepspeed_config",
            "wandb_project",
            "image_column",
            "prompt_column",
            "response_column",
        }
    ) == {
        "base_model": "llava-hf/llava-1.5-7b-hf",
        "model_type": "llava",
        "num_epochs": 3,
        "batch_size": 2,
        "learning_rate": 2e-5,
        "gradient_accumulation_steps": 4,
        "max_seq_length": 2048,
        "lora_r": 64,
        "lora_alpha": 16,
        "lora_dropout": 0.05,
        "use_flash_attention": True,
        "deepspeed_config": "",
        "wandb_project": "",
        "image_column": "image_path",
        "prompt_column": "prompt",
        "response_column": "response",
    }
    assert (spec.max_steps, spec.dry_run, spec.trust_remote_code, spec.on_bad_image) == (0, False, False, "fail")


def test_required_parameters_are_named():
    msg = problems({})
    assert "--dataset_name" in msg and "--output_model_name" in msg


def test_unknown_parameter_is_an_error_naming_it():
    msg = problems({**REQUIRED, "lora_rank": 8})
    assert "--lora_rank: unknown parameter" in msg


def test_all_bad_values_are_reported_at_once():
    msg = problems(
        {**REQUIRED, "batch_size": 0, "lora_dropout": 1.5, "num_epochs": "three", "learning_rate": -1, "epochs": 3}
    )
    for name in ("--batch_size", "--lora_dropout", "--num_epochs", "--learning_rate", "--epochs"):
        assert name in msg, msg
    assert msg.count(";") == 4


@pytest.mark.parametrize("bad", ["zero1", "zero4", "stage2", "2"])
def test_deepspeed_stage_must_be_zero2_or_zero3(bad):
    msg = problems({**REQUIRED, "deepspeed_config": bad})
    assert "--deepspeed_config" in msg and "zero2, zero3" in msg


@pytest.mark.parametrize(
    "given, stored", [("zero2", "zero2"), (" ZeRO3 ", "zero3"), ("", ""), ("none", ""), ("off", "")]
)
def test_deepspeed_stage_is_normalised(given, stored):
    assert parse_spec({**REQUIRED, "deepspeed_config": given}).deepspeed_config == stored


@pytest.mark.parametrize("field", ["dataset_name", "output_model_name"])
@pytest.mark.parametrize("bad", ["My Model", "../etc", "a.b", "", "-lead", "x" * 65, "a/b"])
def test_bad_names_are_rejected(field, bad):
    msg = problems({**REQUIRED, field: bad})
    assert f"--{field}" in msg and repr(bad) in msg


@pytest.mark.parametrize("field", ["base_model", "image_column", "prompt_column", "response_column"])
def test_blank_strings_are_rejected(field):
    assert f"--{field}: must not be empty" in problems({**REQUIRED, field: "  "})


def test_cli_strings_are_coerced():
    spec = parse_spec({**REQUIRED, "num_epochs": "5", "learning_rate": "0.00002", "use_flash_attention": "false"})
    assert (spec.num_epochs, spec.learning_rate, spec.use_flash_attention) == (5, 2e-5, False)


# ---------------------------------------------------------------------------------------------------------
# Model families
# ---------------------------------------------------------------------------------------------------------


def model_dir(tmp_path: Path, model_type: str | None) -> Path:
    d = tmp_path / f"model-{model_type}"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": model_type} if model_type else {}))
    return d


def test_get_family_unknown_lists_the_known_ones():
    with pytest.raises(InvalidInput) as err:
        families.get_family("blip2")
    msg = str(err.value)
    assert "'blip2'" in msg
    for name in ("llava", "llava_next", "qwen2_vl", "phi3_v"):
        assert name in msg


@pytest.mark.parametrize(
    "alias, name", [("qwen2_5_vl", "qwen2_vl"), ("llava-next", "llava_next"), ("phi3v", "phi3_v"), ("llava", "llava")]
)
def test_get_family_aliases(alias, name):
    assert families.get_family(alias).name == name


def test_resolve_trusts_the_models_own_config(tmp_path):
    notes: list[str] = []
    family, config = families.resolve("llava", str(model_dir(tmp_path, "llava_next")), notes.append)
    assert family.name == "llava_next" and config == {"model_type": "llava_next"}
    assert len(notes) == 1 and "llava_next" in notes[0] and "model_type=llava" in notes[0]


def test_resolve_agreeing_type_logs_nothing(tmp_path):
    notes: list[str] = []
    family, _ = families.resolve("llava", str(model_dir(tmp_path, "llava")), notes.append)
    assert family.name == "llava" and notes == []


def test_resolve_qwen2_5_vl_is_the_qwen2_vl_family(tmp_path):
    notes: list[str] = []
    family, _ = families.resolve("qwen2_vl", str(model_dir(tmp_path, "qwen2_5_vl")), notes.append)
    assert family.name == "qwen2_vl" and notes == []
    family, _ = families.resolve("llava", str(model_dir(tmp_path, "qwen2_vl")), notes.append)
    assert family.name == "qwen2_vl" and len(notes) == 1


@pytest.mark.parametrize("hf_type", ["blip-2", None])
def test_resolve_unsupported_model_is_an_error(tmp_path, hf_type):
    with pytest.raises(InvalidInput) as err:
        families.resolve("llava", str(model_dir(tmp_path, hf_type)), lambda m: None)
    msg = str(err.value)
    assert "does not support" in msg and "qwen2_5_vl" in msg and "llava_next" in msg


def test_resolve_folder_without_config_is_an_error(tmp_path):
    with pytest.raises(InvalidInput, match=r"no config\.json"):
        families.resolve("llava", str(tmp_path), lambda m: None)


def test_resolve_unreadable_hub_id_is_refused(tmp_path, monkeypatch):
    """One behaviour: a base model whose config cannot be read is refused, never trusted blindly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # empty cache: nothing to read offline
    with pytest.raises(InvalidInput, match="cannot read base model 'someone/not-cached-model'"):
        families.resolve("qwen2_vl", "someone/not-cached-model", lambda m: None)
    with pytest.raises(InvalidInput, match="does not exist"):
        families.resolve("qwen2_vl", str(tmp_path / "missing-folder"), lambda m: None)


def test_phi3_v_flags():
    fam = families.get_family("phi3_v")
    assert fam.trust_remote_code is True
    assert fam.supported is False and "#2791" in fam.unsupported_reason
    assert fam.hf_model_types == ("phi3_v",)


@pytest.mark.parametrize("name", ["llava", "llava_next", "qwen2_vl"])
def test_supported_families_need_no_remote_code(name):
    fam = families.get_family(name)
    assert fam.supported and not fam.trust_remote_code


def test_messages_column_and_prompt_columns_are_exclusive():
    msg = problems({**REQUIRED, "messages_column": "conversations", "prompt_column": "question"})
    assert "--messages_column and --prompt_column both say what a row is" in msg
    assert parse_spec({**REQUIRED, "messages_column": " messages "}).messages_column == "messages"
    assert parse_spec({**REQUIRED, "response_pick": "first"}).response_pick == "first"
    assert "response_pick" in problems({**REQUIRED, "response_pick": "last"})
