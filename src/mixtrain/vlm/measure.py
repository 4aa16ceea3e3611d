"""Tokens per training row, image tokens included — measured with the model's real processor, in parallel.

The real processor is exact but slow (it loads and preprocesses every image, ~2-5 ms a row), while a
row's length only depends on its text and on each image's *size*. So:

  processor     ``processor.apply_chat_template(tokenize=True)`` with the images loaded as Axolotl
                loads them: every row of a table up to ``SAMPLE`` rows; a seeded sample of ``SAMPLE``
                rows of a larger one.
  length pass   (larger tables) every row: the chat template rendered as text and tokenised (each
                image is one placeholder token there), plus, per image, the tokens the processor expands
                it to — from its size alone (image-token counts depend only on size: fixed for LLaVA,
                anyres tiles for LLaVA-NeXT, 28-px patches for Qwen2-VL). Sizes come from the image
                headers (EXIF rotation applied, as transformers' ``load_image`` does): nothing is decoded.

The length pass must agree with the processor on every sampled row; if it does not, it is not trusted
and the processor runs on every row (stated in the result). Both passes run in a fork-started process
pool over this machine's cores once a table is big enough to pay for it; the workers inherit the processor.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field

SAMPLE = 2000  # rows through the full processor on a large table (all rows of a smaller one)
POOL_MIN = 128  # rows below which a pool costs more than it saves

# Set in the parent before the pool forks; the workers read it (the processor is not picklable cheaply).
_STATE: dict = {}


@dataclass
class Measured:
    lengths: list[int]  # tokens per row, image tokens included
    image_tokens: list[int]  # image tokens per row
    pixels: list[int]  # pixels per image as the processor receives it (after --image_size)
    images: list[int] = field(default_factory=list)  # images per row
    per_image: list[int] = field(default_factory=list)  # image tokens of each image (rows through the processor)
    processor_rows: int = 0  # rows the real processor tokenised
    method: str = ""  # how every row's length was obtained
    disagreements: list[dict] = field(default_factory=list)


def measure(
    proc, template: str | None, rows: list[dict], *, image_size: int | None = None, workers: int = 0
) -> Measured:
    """Tokens per row for ``rows`` (parsed JSONL examples: ``{"messages": [...], "images"?: [...]}``)."""
    image_id = image_token_ids(proc)
    _STATE.update(proc=proc, template=template, image_id=image_id, image_size=image_size, rows=rows)
    workers = workers or len(os.sched_getaffinity(0))
    try:
        order = list(range(len(rows)))
        if len(rows) <= SAMPLE:  # the processor on every row: exact, and no length pass is needed
            real = _map(_processor_pass, order, workers)
            sizes = _map(_sizes, order, workers)
            return Measured(
                [n for n, _, _ in real],
                [k for _, k, _ in real],
                [w * h for row in sizes for w, h in row],
                images=[len(row) for row in sizes],
                per_image=[c for _, _, runs in real for c in runs],
                processor_rows=len(rows),
                method="processor on every row",
            )
        fast = _map(_length_pass, order, workers)  # (text tokens, placeholders, sizes) per row
        per_size = _tokens_for_sizes({s for _, _, sizes in fast for s in sizes})
        lengths: list[int] = []
        images: list[int] = []
        pixels: list[int] = []
        n_images: list[int] = []
        for text, placeholders, sizes in fast:
            counts = [per_size[s] for s in sizes]
            lengths.append(text - placeholders + sum(counts))
            images.append(sum(counts) if sizes else placeholders)
            pixels.extend(w * h for w, h in sizes)
            n_images.append(len(sizes))
        sample = sorted(random.Random(0).sample(order, SAMPLE))
        checked = dict(zip(sample, _map(_processor_pass, sample, workers), strict=True))
        wrong = [i for i in sample if checked[i][0] != lengths[i]]
        disagreements = [{"line": i, "processor": checked[i][0], "length_pass": lengths[i]} for i in wrong[:5]]
        if wrong:  # the length pass is not exact for this processor: measure every row the slow way
            rest = [i for i in order if i not in checked]
            checked.update(zip(rest, _map(_processor_pass, rest, workers), strict=True))
        per_image = [c for i in sorted(checked) for c in checked[i][2]]
        for i, (n, k, _) in checked.items():
            lengths[i], images[i] = n, k
        method = (
            f"processor on every row (the length pass disagreed on {len(wrong)} of {len(sample)} sampled rows)"
            if wrong
            else f"processor on a seeded sample of {len(sample)} rows, agreeing with a length pass over every row"
        )
        return Measured(lengths, images, pixels, n_images, per_image, len(checked), method, disagreements)
    finally:
        _STATE.clear()


def image_token_ids(proc) -> frozenset[int] | None:
    """The ids that stand for an image's features in a row (what the processor expands one image to).

    Not simply ``processor.image_token_id``: Gemma 3's is its begin-of-image marker (1 a row), while the
    features sit on ``<image_soft_token>`` x ``image_seq_length``. Processors that know better list them in
    ``image_token_ids`` (Gemma 3: the soft token; Pixtral: [IMG], [IMG_BREAK], [IMG_END]; InternVL:
    <IMG_CONTEXT> and its start/end) — the count ``_get_num_multimodal_tokens`` reports for a size.
    """
    listed = getattr(proc, "image_token_ids", None)
    if listed:
        return frozenset(int(i) for i in listed if i is not None)
    image_id = getattr(proc, "image_token_id", None)
    if image_id is None and getattr(proc, "image_token", None):
        image_id = proc.tokenizer.convert_tokens_to_ids(proc.image_token)
    return None if image_id is None else frozenset([int(image_id)])


def _count(ids: list[int], wanted: frozenset[int] | None) -> int:
    return sum(1 for i in ids if i in wanted) if wanted else 0


def _map(fn, indices, workers: int) -> list:
    indices = list(indices)
    if workers <= 1 or len(indices) < POOL_MIN:
        return [fn(i) for i in indices]
    import multiprocessing

    chunk = max(8, len(indices) // (workers * 8))
    with multiprocessing.get_context("fork").Pool(workers, initializer=_one_thread) as pool:
        return pool.map(fn, indices, chunksize=chunk)


def _one_thread() -> None:
    """In a forked worker, torch must not start an OpenMP pool: the parent's is gone after fork and the
    first parallel region would hang (PyTorch's DataLoader workers do the same). One process per core."""
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _ids(out) -> list[int]:
    ids = out["input_ids"]
    ids = ids.tolist() if hasattr(ids, "tolist") else ids
    return list(ids[0] if ids and isinstance(ids[0], list) else ids)


def _processor_pass(i: int) -> tuple[int, int, list[int]]:
    """(tokens, image tokens, image tokens of each image) of row ``i`` through the real processor and chat
    template, images loaded."""
    proc, image_id = _STATE["proc"], _STATE["image_id"]
    ids = _ids(
        proc.apply_chat_template(
            _with_images(_STATE["rows"][i], _STATE["image_size"]),
            chat_template=_STATE["template"],
            tokenize=True,
            return_dict=True,
        )
    )
    runs = _runs(ids, image_id)
    return len(ids), sum(runs), runs


def _runs(ids: list[int], image_id: frozenset[int] | None) -> list[int]:
    """Lengths of the runs of image tokens: one run per image (templates put text or markers between images).

    A tiled image whose tiles are separated by marker tokens (SmolVLM2's <row_i_col_j>) is several runs."""
    runs: list[int] = []
    last = None
    for t in ids:
        if image_id and t in image_id:
            if last is not None and last in image_id:
                runs[-1] += 1
            else:
                runs.append(1)
        last = t
    return runs


def _length_pass(i: int) -> tuple[int, int, list[tuple[int, int]]]:
    """(text tokens with one placeholder per image, placeholders, image sizes) of row ``i``; decodes no image."""
    proc, image_id, row = _STATE["proc"], _STATE["image_id"], _STATE["rows"][i]
    text = proc.apply_chat_template(row["messages"], chat_template=_STATE["template"], tokenize=False)
    bos = getattr(proc.tokenizer, "bos_token", None)
    # The processor adds no special tokens when the template already starts with BOS (transformers' rule).
    ids = _ids(proc.tokenizer(text, add_special_tokens=not (bos and text.startswith(bos))))
    return len(ids), _count(ids, image_id), _sizes(i)


def _sizes(i: int) -> list[tuple[int, int]]:
    return [_size(path, _STATE["image_size"]) for path in image_paths(_STATE["rows"][i])]


def image_paths(row: dict) -> list[str]:
    """The image files of one example: an ``images`` list, or ``path``/``image`` entries in the messages."""
    if row.get("images"):
        return list(row["images"])
    return [
        part.get("path") or part.get("image")
        for msg in row["messages"]
        if isinstance(msg.get("content"), list)
        for part in msg["content"]
        if part.get("type") == "image" and (part.get("path") or part.get("image"))
    ]


def _size(path: str, image_size: int | None) -> tuple[int, int]:
    if image_size:
        return (image_size, image_size)  # Axolotl pads every image to this square
    from PIL import Image

    with Image.open(path) as im:
        w, h = im.size
        if im.getexif().get(0x0112) in (5, 6, 7, 8):  # EXIF orientations that rotate by 90°
            w, h = h, w
    return (w, h)


def _tokens_for_sizes(sizes: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Image tokens the processor expands one image of each (width, height) to.

    transformers' processors answer this from sizes alone (``_get_num_multimodal_tokens``, what vLLM
    uses); a processor without it is asked the slow way, on a blank image of each size. Either way the
    sample through the real processor checks the answer.
    """
    from PIL import Image

    proc, image_id = _STATE["proc"], _STATE["image_id"]
    if image_id is None:
        return dict.fromkeys(sizes, 0)
    ordered = sorted(sizes)
    try:
        counts = proc._get_num_multimodal_tokens(image_sizes=[(h, w) for w, h in ordered]).num_image_tokens
        return dict(zip(ordered, (int(c) for c in counts), strict=True))
    except Exception:  # not implemented for this processor: ask it with images
        token = getattr(proc, "image_token", None) or proc.tokenizer.convert_ids_to_tokens(min(image_id))
        return {s: _count(_ids(proc(text=[token], images=[Image.new("RGB", s)])), image_id) for s in ordered}


def sized(image, image_size: int | None):
    """An image as Axolotl hands it to the processor under ``image_size`` (padded to a black square)."""
    if not image_size:
        return image
    from PIL import Image, ImageOps

    return ImageOps.pad(image, (image_size, image_size), method=Image.Resampling.BILINEAR, color=(0, 0, 0))


def _with_images(row: dict, image_size: int | None) -> list[dict]:
    """The row's messages with each image placeholder carrying the image itself, loaded as Axolotl loads it."""
    from transformers.image_utils import load_image

    messages = json.loads(json.dumps(row["messages"]))
    queue = list(row.get("images") or [])
    for msg in messages:
        for part in msg["content"] if isinstance(msg.get("content"), list) else []:
            if part.get("type") != "image":
                continue
            ref = part.pop("path", None) or part.pop("image", None) or (queue.pop(0) if queue else None)
            part["image"] = sized(load_image(ref), image_size)
    return messages
