"""A small visual task whose answer depends only on the image: the colour of a drawn shape.

A fine-tune that ignores the image, trains on the wrong tokens or saves the wrong adapter still
"runs"; held-out accuracy on this task does not lie. Six colours (chance 1/6), three shapes,
varied size, position, background and prompt wording; held-out images are new renderings.

    python -m mixtrain.testing.colour_task --out DIR [--train 96] [--test 48] [--size 64]
writes DIR/train.csv and DIR/test.csv (image_path,prompt,response), DIR/test.jsonl ({"image","prompt"}),
DIR/test_answers.json, the controls DIR/test_blank.csv (no shape drawn) and DIR/test_shuffled.csv (the
test images paired with other rows' prompts and answers), and DIR/images/ (files named by index only).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from mixtrain.testing.tiny_vlm import COLOUR_RGB, SHAPES

PROMPTS = (
    "What colour is the shape?",
    "What color is the shape?",
    "What is the colour of the shape in this image?",
    "Which colour is the shape?",
    "Name the colour of the shape.",
    "Describe the colour of the shape.",
)
# Backgrounds that are none of the answer colours.
BACKGROUNDS = {
    "grey": (128, 128, 128),
    "light grey": (200, 200, 200),
    "dark grey": (60, 60, 60),
    "beige": (225, 210, 180),
}


def render(colour: str, shape: str, size: int, rng: random.Random):
    """One image: a shape of random size and position on a random neutral background."""
    from PIL import Image, ImageDraw

    bg = BACKGROUNDS[rng.choice(sorted(BACKGROUNDS))]
    img = Image.new("RGB", (size, size), bg)
    draw = ImageDraw.Draw(img)
    side = rng.randint(size // 2, size * 7 // 8)
    x0, y0 = rng.randint(0, size - side), rng.randint(0, size - side)
    box = (x0, y0, x0 + side - 1, y0 + side - 1)
    fill = COLOUR_RGB[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((box[0] + box[2]) // 2, box[1]), (box[0], box[3]), (box[2], box[3])], fill=fill)
    return img


# Six well-separated colours (chance 1/6): orange and purple sit between red/yellow and blue/red in
# hue, which a frozen random vision tower blurs; they are available through `colours=` for a harder task.
TASK_COLOURS = ("red", "green", "blue", "yellow", "white", "black")


def make_task(
    out: str | Path, n_train: int = 96, n_test: int = 48, size: int = 64, seed: int = 0, colours=TASK_COLOURS
) -> dict:
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def sample(split: str, n: int) -> list[dict]:
        rows = []
        for i in range(n):
            colour, shape = colours[i % len(colours)], rng.choice(SHAPES)
            rows.append({"render": render(colour, shape, size, rng), "prompt": rng.choice(PROMPTS), "answer": colour})
        rng.shuffle(rows)
        # Files are named by their row after shuffling: neither the name nor its index gives the answer away.
        for i, r in enumerate(rows):
            path = out / "images" / f"{split}_{i:04d}.png"
            r.pop("render").save(path)
            r["image"] = str(path)
        return rows

    train, test = sample("train", n_train), sample("test", n_test)
    with open(out / "train.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        w.writerows((r["image"], r["prompt"], r["answer"]) for r in train)
    (out / "test.jsonl").write_text(
        "".join(json.dumps({"image": r["image"], "prompt": r["prompt"]}) + "\n" for r in test)
    )
    (out / "test_answers.json").write_text(json.dumps([r["answer"] for r in test]))
    _write_csv(out / "test.csv", test)
    # Controls: the same prompts and answers with images that do not show the answer. A model that
    # reads the image scores near the 1/6 prior on both; one that guesses from the prompt would not drop.
    blank = []
    for i, r in enumerate(test):
        path = out / "images" / f"blank_{i:04d}.png"
        render_blank(size, rng).save(path)
        blank.append({**r, "image": str(path)})
    _write_csv(out / "test_blank.csv", blank)
    order = list(range(len(test)))
    rng.shuffle(order)
    _write_csv(out / "test_shuffled.csv", [{**r, "image": test[j]["image"]} for r, j in zip(test, order, strict=False)])
    return {
        "train_csv": out / "train.csv",
        "test_jsonl": out / "test.jsonl",
        "answers": out / "test_answers.json",
        "test_csv": out / "test.csv",
        "blank_csv": out / "test_blank.csv",
        "shuffled_csv": out / "test_shuffled.csv",
        "colours": list(colours),
    }


def render_blank(size: int, rng: random.Random):
    """A background without a shape: nothing in it says which colour to answer."""
    from PIL import Image

    return Image.new("RGB", (size, size), BACKGROUNDS[rng.choice(sorted(BACKGROUNDS))])


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image_path", "prompt", "response"])
        w.writerows((r["image"], r["prompt"], r["answer"]) for r in rows)


def accuracy(results_jsonl: str | Path, answers_json: str | Path) -> float:
    """Exact match (case- and punctuation-insensitive) of `model run --inputs-file` output vs answers."""
    answers = json.loads(Path(answers_json).read_text())
    outputs = [
        json.loads(line)["generated_text"] for line in Path(results_jsonl).read_text().splitlines() if line.strip()
    ]
    norm = lambda s: s.strip().strip(".!").lower()  # noqa: E731
    return sum(norm(o) == a for o, a in zip(outputs, answers, strict=False)) / max(1, len(answers))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--train", type=int, default=96)
    p.add_argument("--test", type=int, default=48)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    info = make_task(a.out, a.train, a.test, a.size, a.seed)
    print(json.dumps({k: str(v) for k, v in info.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
