"""The Axolotl VLM fine-tune recipe: prepare → configure → launch → register (see ``recipe.py``)."""
