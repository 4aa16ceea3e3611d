"""Import only what inference needs, so one ``mixtrain model run`` is not mostly import time.

Why: measured on these machines, a single ``model run`` spent ~95% of its ~13.5 s importing. Most of
that was optional integrations that a base model + LoRA adapter never uses, pulled in only because
they are *installed* (the training stack brings them):

- scikit-learn (+ scipy): transformers' assisted-generation code imports ``sklearn.metrics`` when
  sklearn is present; its object-detection loss imports ``scipy.optimize``.
- torchao and bitsandbytes: transformers' quantizer registry and ``import peft`` import them; torchao
  then tries to load CUDA extensions and prints failures and deprecation warnings to the user.
- mistral_common (+ pydantic, requests, chardet; ~0.25 s): the processor's argument check resolves
  ``transformers.MistralCommonBackend``, which imports it whenever it is installed. Hidden unless the
  processor folder's tokenizer may be Mistral-format (:func:`needs_mistral_common`).
- triton (~80 ms): ``torch._dynamo`` imports it when installed. Hidden only without an NVIDIA driver.

transformers and peft decide "is X available?" with ``importlib.util.find_spec`` and cache the answer.
A ``None`` entry in ``sys.modules`` is Python's documented way to say "this module cannot be imported"
(``find_spec`` returns ``None``, ``import`` raises ImportError), so while the inference libraries are
imported we hide those packages, then remove the ``None`` entries again: the libraries keep their
"unavailable" answer, and anything imported later in the process still finds the packages.

Two more costs of the same imports, not integrations:
- the garbage collector: ~7 full collections, each walking the objects the imports create, ran during
  one ``model run`` (0.70 s of ~4.6 s). :func:`collector_paused` pauses it for the imports and
  freezes what they made (see there).
- ``import transformers`` computes ``importlib.metadata.packages_distributions()`` (0.24 s, 279
  distributions installed); :func:`cached_distributions` serves it from a cache keyed by the installation.

This is done only where mixtrain owns the whole process (the ``model run`` / ``model export`` commands
and the training process ``mixtrain.vlm.axolotl_main`` call :func:`enable`), or where the user asks for it with ``MIXTRAIN_LEAN_IMPORTS=1``; an SDK user's
own process is left as it is unless they opt in (``MIXTRAIN_LEAN_IMPORTS=0`` turns it off everywhere).
A model whose ``config.json`` carries a ``quantization_config`` needs its quantization library, so then
torchao and bitsandbytes are not hidden. None of it changes what is computed: answers are identical.

Measured what did NOT pay, or cannot be done safely from here:
- importing the concrete model class (e.g. ``LlavaForConditionalGeneration``) instead of
  ``AutoModelForImageTextToText`` saves ~30 ms: the concrete modeling module imports the same stack.
- ``torch._dynamo`` (~0.65 s with GC paused, and it imports ``torch.distributed.tensor`` and sympy) is
  imported unconditionally by three separate lines: transformers' ``masking_utils`` (``from
  torch._dynamo._trace_wrapped_higher_order_op import TransformGetItemToIndex``, which needs the whole
  package), ``integrations/deepgemm.py`` (``@torch._dynamo.assume_constant_result`` at module level,
  reached from ``modeling_utils``), and torchvision's ``ops/roi_align.py``. No switch of transformers
  or torch turns them off; only replacing torch modules in ``sys.modules`` would, which is not safe.
  ``torch.distributed.tensor`` (~0.32 s alone; from ``transformers.distributed.tensor_parallel`` when
  ``torch.distributed.is_available()``) would still come in through dynamo.
- fewer torch threads: a tiny model generates as fast with 1 thread as with 2 on an idle machine; only
  on a CPU shared with other work do 2 threads oversubscribe it (then ``OMP_NUM_THREADS=1`` is the fix,
  the user's choice: thread count may change float summation order, so it is not set from here).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mixtrain.hardware import nvidia_driver_present

# Optional integrations that inference of an unquantized base model + LoRA adapter never uses.
UNUSED_BY_INFERENCE = ("sklearn", "scipy")
QUANTIZATION_LIBS = ("torchao", "bitsandbytes")
# Only Mistral-format tokenizers (tekken.json, MistralCommonBackend) use it; the processor's class check imports it.
MISTRAL_FORMAT_LIB = "mistral_common"
# A GPU kernel compiler (torch.compile, some quantized kernels); torch._dynamo imports it if installed.
GPU_KERNEL_LIBS = ("triton",)
ENV = "MIXTRAIN_LEAN_IMPORTS"

_enabled = False


def enable() -> None:
    """Declare this process one of mixtrain's own inference processes (a CLI command, a worker)."""
    global _enabled
    _enabled = True


def active() -> bool:
    """Lean imports apply: enabled by the process owner or opted into by the user, and not turned off."""
    flag = os.environ.get(ENV, "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    return _enabled or flag in ("1", "true", "yes", "on")


def is_quantized(model_dir: str | Path) -> bool:
    """Whether the weights in ``model_dir`` are pre-quantized (then their quantization library is needed)."""
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return True  # unknown: do not hide what loading it might need
    return isinstance(cfg, dict) and "quantization_config" in cfg


def needs_mistral_common(tokenizer_dir: str | Path | None) -> bool:
    """Whether the tokenizer in ``tokenizer_dir`` may be a Mistral-format one (then mistral_common is needed).

    transformers picks ``MistralCommonBackend`` for a ``tekken.json``/``tokenizer.model.v*`` file, for a
    ``tokenizer_config.json`` that names it, and (with no class named) for Mistral model types. So only a
    local folder whose ``tokenizer_config.json`` names another class and has no Mistral files is "no".
    """
    if tokenizer_dir is None or not Path(tokenizer_dir).is_dir():
        return True  # a hub id or nothing known: do not hide what loading it might need
    d = Path(tokenizer_dir)
    if (d / "tekken.json").exists() or any(d.glob("tokenizer.model.v*")):
        return True
    try:
        cls = json.loads((d / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return True
    return not isinstance(cls, str) or not cls or "mistral" in cls.lower()


def hidden_modules(model_dir: str | Path, tokenizer_dir: str | Path | None = None) -> list[str]:
    """The top-level packages to hide while importing the inference stack for ``model_dir``.

    ``tokenizer_dir`` is where the processor (and its tokenizer) is loaded from; without it the
    tokenizer's needs are unknown and mistral_common stays visible.
    """
    if not active():
        return []
    names = list(UNUSED_BY_INFERENCE) + ([] if is_quantized(model_dir) else list(QUANTIZATION_LIBS))
    if not needs_mistral_common(tokenizer_dir):
        names.append(MISTRAL_FORMAT_LIB)
    if not nvidia_driver_present():  # no GPU: nothing here can run a triton kernel
        names += GPU_KERNEL_LIBS
    return [n for n in names if n not in sys.modules]  # already imported: hiding it would change nothing


def one_stack(model_dirs: Sequence[str | Path]) -> bool:
    """Whether one lean import suits every model in ``model_dirs`` (local folders that agree on quantized and
    on Mistral-format): a process that loads several models imports the stack once, and transformers keeps
    the availability answers of that first import, so a later model must not need what the first hid."""
    if not model_dirs or not all(Path(d).is_dir() for d in model_dirs):
        return False
    return len({(is_quantized(d), needs_mistral_common(d)) for d in model_dirs}) == 1


@contextlib.contextmanager
def hiding(names: list[str]):
    """Make ``names`` look uninstalled to ``find_spec``/``import`` inside the block, and only there."""
    for n in names:
        sys.modules[n] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for n in names:
            if n in sys.modules and sys.modules[n] is None:
                del sys.modules[n]


@contextlib.contextmanager
def lean_imports(model_dir: str | Path, tokenizer_dir: str | Path | None = None, cache_dir: str | Path | None = None):
    """Around importing AND loading a model (loading runs more availability checks): hide what it never uses.

    With ``cache_dir``, transformers' map of installed distributions is read from a cache there (see
    :func:`cached_distributions`).
    """
    with hiding(hidden_modules(model_dir, tokenizer_dir)), cached_distributions(cache_dir):
        yield


DISTRIBUTIONS_CACHE = "packages-distributions.json"


def _installation_key() -> list:
    """What ``packages_distributions()`` depends on: the interpreter and every ``sys.path`` entry with its mtime.

    Installing, upgrading or removing a distribution adds or removes a ``*.dist-info`` folder in a
    ``sys.path`` directory, which changes that directory's modification time.
    """
    key: list = [sys.version, sys.prefix]
    for entry in sys.path:
        try:
            key.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:
            key.append([entry, None])
    return key


@contextlib.contextmanager
def cached_distributions(cache_dir: str | Path | None):
    """Serve ``importlib.metadata.packages_distributions()`` from a cache file inside the block (lean processes only).

    Why: ``import transformers`` computes that map once, at import (``PACKAGE_DISTRIBUTION_MAPPING``), by
    reading the metadata of every installed distribution — ~0.24 s with the training stack installed,
    the same answer every time until something is installed. The cache is keyed by
    :func:`_installation_key`; a changed installation recomputes it. Outside the block the standard
    function is back.
    """
    import importlib.metadata as md

    if not active() or cache_dir is None or "transformers.utils.import_utils" in sys.modules:
        yield  # not ours, or transformers already holds its map
        return
    path = Path(cache_dir) / DISTRIBUTIONS_CACHE
    key = _installation_key()
    mapping: dict[str, list[str]] | None = None
    with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
        data = json.loads(path.read_text())
        if data["key"] == key:
            mapping = {str(k): [str(d) for d in v] for k, v in data["map"].items()}
    standard = md.packages_distributions

    def packages_distributions():
        nonlocal mapping
        if mapping is None:
            mapping = {k: list(v) for k, v in standard().items()}
            _write_json(path, {"key": key, "map": mapping})
        return {k: list(v) for k, v in mapping.items()}

    md.packages_distributions = packages_distributions
    try:
        yield
    finally:
        md.packages_distributions = standard


def _write_json(path: Path, data: dict) -> None:
    """Atomically, best effort: a cache that cannot be written is only a slower next start."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


@contextlib.contextmanager
def collector_paused():
    """Run the block with the cyclic garbage collector off, then freeze what survived it (lean processes only).

    Importing torch + transformers + peft creates ~660k long-lived objects (modules, classes,
    functions); each full collection the growth triggers walks all of them, and ~7 of them ran during one
    ``model run``. Module-level objects live until the process ends, so nothing is lost by not scanning
    them: ``gc.freeze()`` moves them to the permanent generation, where later collections skip them.
    Only for imports: a model load's cyclic garbage may hold tensors and must stay collectable. At exit
    they are unfrozen, so an interpreter that shuts down normally still finalizes them (nanobind, used
    by triton, reports "leaked" objects otherwise).
    """
    if not active() or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()
        atexit.register(gc.unfreeze)


def import_training_stack() -> None:
    """Import Axolotl's config and training entry points with scikit-learn and scipy hidden and the collector
    paused (a no-op when not lean).

    Why: every training and dry run starts a Python that imports Axolotl (torch, transformers, peft,
    accelerate, datasets): ~7 s, measured, of which scikit-learn and scipy — pulled in by transformers'
    assisted generation and object-detection loss only because they are installed — and the collector's
    full passes over the imported objects are ~2 s. A LoRA/full fine-tune of a VLM uses neither package;
    anything imported after this block still finds them. Quantization libraries and triton stay visible:
    QLoRA and GPU kernels use them.
    """
    if not active():
        return
    with hiding([n for n in UNUSED_BY_INFERENCE if n not in sys.modules]), collector_paused():
        import axolotl.cli.args
        import axolotl.cli.config
        import axolotl.cli.train
        import axolotl.utils.config  # noqa: F401


def import_inference_stack(with_peft: bool) -> None:
    """Import what loading a model needs up front, inside :func:`collector_paused` (a no-op when not lean)."""
    if not active():
        return
    with collector_paused():
        import torch  # noqa: F401
        from transformers import AutoModelForImageTextToText, AutoProcessor  # noqa: F401

        if with_peft:
            from peft import PeftModel  # noqa: F401
