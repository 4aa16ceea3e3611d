"""Lean inference imports: which packages are hidden, when, and that hiding is undone afterwards."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mixtrain.models import _fastimport


@pytest.fixture
def lean(monkeypatch):
    monkeypatch.delenv(_fastimport.ENV, raising=False)
    monkeypatch.setattr(_fastimport, "_enabled", False)
    return monkeypatch


def _model_dir(tmp_path, **config):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava", **config}))
    return tmp_path


def test_nothing_hidden_in_a_process_mixtrain_does_not_own(lean, tmp_path):
    assert _fastimport.hidden_modules(_model_dir(tmp_path)) == []


def test_own_process_hides_optional_integrations_not_yet_imported(lean, tmp_path):
    _fastimport.enable()
    lean.setattr(_fastimport, "nvidia_driver_present", lambda: True)
    hidden = _fastimport.hidden_modules(_model_dir(tmp_path))
    expected = [m for m in ("sklearn", "scipy", "torchao", "bitsandbytes") if m not in sys.modules]
    assert hidden == expected


@pytest.mark.parametrize("gpu", [True, False])
def test_triton_hidden_only_without_a_gpu_driver(lean, tmp_path, gpu):
    _fastimport.enable()
    lean.setattr(_fastimport, "nvidia_driver_present", lambda: gpu)
    hidden = _fastimport.hidden_modules(_model_dir(tmp_path))
    assert ("triton" in hidden) is (not gpu and "triton" not in sys.modules)


def test_quantized_weights_keep_their_quantization_library(lean, tmp_path):
    _fastimport.enable()
    hidden = _fastimport.hidden_modules(_model_dir(tmp_path, quantization_config={"quant_method": "bitsandbytes"}))
    assert "torchao" not in hidden and "bitsandbytes" not in hidden


def test_unreadable_config_hides_no_quantization_library(lean, tmp_path):
    _fastimport.enable()
    hidden = _fastimport.hidden_modules(tmp_path / "missing")
    assert "torchao" not in hidden and "bitsandbytes" not in hidden


@pytest.mark.parametrize(
    "value, enabled, active",
    [("0", True, False), ("off", True, False), ("1", False, True), ("", True, True), ("", False, False)],
)
def test_env_switch(lean, value, enabled, active):
    lean.setenv(_fastimport.ENV, value)
    lean.setattr(_fastimport, "_enabled", enabled)
    assert _fastimport.active() is active


def test_hiding_makes_a_package_unimportable_only_inside_the_block():
    name = "mixtrain_fastimport_probe"  # a real importable module, written below, never imported before
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / f"{name}.py").write_text("VALUE = 1\n")
        sys.path.insert(0, d)
        try:
            assert importlib.util.find_spec(name) is not None
            with _fastimport.hiding([name]):
                assert importlib.util.find_spec(name) is None
                with pytest.raises(ImportError):
                    __import__(name)
            assert name not in sys.modules
            assert __import__(name).VALUE == 1  # importable again afterwards
        finally:
            sys.path.remove(d)
            sys.modules.pop(name, None)


def test_hiding_leaves_a_module_imported_inside_the_block_alone():
    with _fastimport.hiding(["mixtrain_fastimport_never"]):
        sys.modules["mixtrain_fastimport_never"] = sys  # something real replaced the marker
    try:
        assert sys.modules["mixtrain_fastimport_never"] is sys
    finally:
        del sys.modules["mixtrain_fastimport_never"]


def _tokenizer_dir(tmp_path, files=(), **config):
    d = tmp_path / "proc"
    d.mkdir()
    (d / "tokenizer_config.json").write_text(json.dumps(config))
    for f in files:
        (d / f).write_text("{}")
    return d


@pytest.mark.parametrize(
    "config, files, needed",
    [
        ({"tokenizer_class": "TokenizersBackend"}, (), False),
        ({"tokenizer_class": "Qwen2Tokenizer"}, (), False),
        ({"tokenizer_class": "TokenizersBackend"}, ("tekken.json",), True),  # Mistral format by its file
        ({"tokenizer_class": "LlamaTokenizer"}, ("tokenizer.model.v3",), True),
        ({"tokenizer_class": "MistralCommonBackend"}, (), True),
        ({}, (), True),  # no class named: transformers may pick it by model type
    ],
)
def test_mistral_common_is_needed_only_by_mistral_format_tokenizers(tmp_path, config, files, needed):
    assert _fastimport.needs_mistral_common(_tokenizer_dir(tmp_path, files, **config)) is needed


def test_unknown_tokenizer_keeps_mistral_common(tmp_path):
    assert _fastimport.needs_mistral_common(None)
    assert _fastimport.needs_mistral_common("org/model-on-the-hub")
    assert _fastimport.needs_mistral_common(tmp_path)  # a folder without tokenizer_config.json


def test_own_process_hides_mistral_common_for_a_plain_tokenizer(lean, tmp_path):
    _fastimport.enable()
    model = _model_dir(tmp_path)
    plain = _tokenizer_dir(tmp_path, tokenizer_class="TokenizersBackend")
    assert ("mistral_common" in _fastimport.hidden_modules(model, plain)) is ("mistral_common" not in sys.modules)
    assert "mistral_common" not in _fastimport.hidden_modules(model)  # tokenizer unknown


def test_collector_paused_in_own_process_then_frozen(lean):
    import gc

    _fastimport.enable()
    assert gc.isenabled()
    before = gc.get_freeze_count()
    try:
        with _fastimport.collector_paused():
            assert not gc.isenabled()
            kept = [object() for _ in range(10)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= before + len(kept)  # what the block created is no longer scanned
    finally:
        gc.unfreeze()  # this test process is not ours: give its objects back to the collector


def test_collector_untouched_in_a_process_mixtrain_does_not_own(lean):
    import gc

    before = gc.get_freeze_count()
    with _fastimport.collector_paused():
        assert gc.isenabled()
    assert gc.get_freeze_count() == before


def _cache_file(cache, mapping, key=None):
    cache.mkdir(exist_ok=True)
    data = {"key": key if key is not None else _fastimport._installation_key(), "map": mapping}
    (cache / _fastimport.DISTRIBUTIONS_CACHE).write_text(json.dumps(data))


@pytest.fixture
def no_transformers(monkeypatch):
    monkeypatch.delitem(sys.modules, "transformers.utils.import_utils", raising=False)


def test_distribution_map_is_served_from_a_matching_cache(lean, no_transformers, tmp_path):
    import importlib.metadata as md

    _fastimport.enable()
    standard = md.packages_distributions
    _cache_file(tmp_path, {"probe_pkg": ["probe-dist"]})  # a map no real installation has: proves the cache is read
    with _fastimport.cached_distributions(tmp_path):
        assert md.packages_distributions() == {"probe_pkg": ["probe-dist"]}
    assert md.packages_distributions is standard


def test_distribution_map_recomputed_and_cached_when_the_installation_changed(lean, no_transformers, tmp_path):
    import importlib.metadata as md

    _fastimport.enable()
    _cache_file(tmp_path, {"probe_pkg": ["probe-dist"]}, key=["another interpreter"])
    with _fastimport.cached_distributions(tmp_path):
        fresh = md.packages_distributions()
    assert fresh == {k: list(v) for k, v in md.packages_distributions().items()}
    saved = json.loads((tmp_path / _fastimport.DISTRIBUTIONS_CACHE).read_text())
    assert saved["key"] == _fastimport._installation_key() and saved["map"] == fresh


def test_distribution_map_untouched_when_not_ours_or_transformers_already_has_it(lean, monkeypatch, tmp_path):
    import importlib.metadata as md

    standard = md.packages_distributions
    with _fastimport.cached_distributions(tmp_path):  # not our process
        assert md.packages_distributions is standard
    _fastimport.enable()
    monkeypatch.setitem(sys.modules, "transformers.utils.import_utils", sys)  # it computed its map already
    with _fastimport.cached_distributions(tmp_path):
        assert md.packages_distributions is standard
    assert not (tmp_path / _fastimport.DISTRIBUTIONS_CACHE).exists()


TRAINING_PROBE = r"""
import gc, importlib.util, json, sys
from mixtrain.models import _fastimport
_fastimport.enable()  # as mixtrain.vlm.axolotl_main does
_fastimport.import_training_stack()
import axolotl.utils.config  # what the training process imports first (load): already imported when lean
names = ("sklearn", "scipy")
print(json.dumps({"loaded": [n for n in names if n in sys.modules], "gc": gc.isenabled(),
                  "findable": [n for n in names if importlib.util.find_spec(n) is not None]}))
"""


def test_training_process_imports_axolotl_without_sklearn_and_scipy():
    """The trick of `import_training_stack` (every training and dry run): Axolotl's entry points import with
    scikit-learn and scipy hidden, both stay installed for later imports, and the collector runs again. The
    control (``MIXTRAIN_LEAN_IMPORTS=0``) shows Axolotl's stack does import them otherwise: when an upgrade
    stops importing them, the control fails and this trick can go."""
    from harness import parallel, prefetch

    def probe(flag: str) -> dict:
        env = dict(prefetch.environ(), MIXTRAIN_LEAN_IMPORTS=flag, OMP_NUM_THREADS="1")
        proc = subprocess.run(
            [sys.executable, "-c", TRAINING_PROBE], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    lean, full = parallel.run_all([lambda: probe("1"), lambda: probe("0")])
    assert full["loaded"] == ["sklearn", "scipy"], "control: Axolotl's stack no longer imports them"
    assert lean["loaded"] == [] and lean["gc"]
    assert lean["findable"] == full["findable"] == ["sklearn", "scipy"]  # hidden only during the import


def test_one_lean_import_serves_several_models_only_when_they_need_the_same(tmp_path):
    """An eval loads several models in one process: the first import's hidden packages stay unavailable to
    transformers, so lean only when every model needs the same ones."""

    def folder(name: str, tokenizer_class: str, **config) -> Path:
        d = tmp_path / name
        d.mkdir()
        _model_dir(d, **config)
        (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": tokenizer_class}))
        return d

    plain = [folder("a", "LlamaTokenizerFast"), folder("b", "Qwen2TokenizerFast")]
    quant = folder("q", "LlamaTokenizerFast", quantization_config={"quant_method": "bitsandbytes"})
    mistral = folder("m", "LlamaTokenizerFast")
    (mistral / "tekken.json").write_text("{}")
    assert _fastimport.one_stack(plain)
    assert _fastimport.one_stack([quant, quant])
    assert not _fastimport.one_stack([*plain, quant])
    assert not _fastimport.one_stack([plain[0], mistral])
    assert not _fastimport.one_stack([plain[0], "org/hub-model"])  # unknown needs: not lean
