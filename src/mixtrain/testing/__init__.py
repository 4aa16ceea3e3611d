"""Test helpers that need no network: tiny random-weight VLMs built locally (see `tiny_vlm`).

Used by the e2e tests, the demo and the benchmarks, so that a real Axolotl fine-tune can run on a
laptop CPU in seconds without downloading anything from a model hub.
"""
