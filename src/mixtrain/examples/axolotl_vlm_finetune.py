"""Fine-tune a vision-language model (LLaVA, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL) with LoRA through Axolotl.

Register it:  mixtrain workflow create axolotl_vlm_finetune.py --name vlm-finetune
Run it:       mixtrain workflow run vlm-finetune --dataset_name my-vlm-data --output_model_name my-model
See inputs:   mixtrain workflow run vlm-finetune --help

The inputs are the fields of ``mixtrain.vlm.spec.FinetuneSpec`` (the spec's parameter tables, with
their defaults, choices and bounds); the recipe lives in ``mixtrain.vlm.recipe``:
prepare → configure → launch → register.
"""

from mixtrain import MixFlow
from mixtrain.vlm.spec import FinetuneSpec


class AxolotlVLMFinetune(MixFlow):
    """Fine-tune a VLM with LoRA through Axolotl on a mixtrain image-text dataset, then register the adapter."""

    _mixflow_gpu = "a100"
    _mixflow_memory = 81920  # 80GB

    def run(self, params: FinetuneSpec):
        from mixtrain.vlm.recipe import finetune

        return finetune(params, self.run_context)
