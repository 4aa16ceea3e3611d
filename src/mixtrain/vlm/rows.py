"""One dataset row → the turns of one training conversation, with its images where they belong.

Two row shapes train (issue #18 §3):

  columns        ``--image_column`` (one image or a list) + ``--prompt_column`` + ``--response_column``:
                 one user turn and one assistant turn. A literal ``<image>`` in the prompt marks where
                 the image goes (LLaVA-style CSVs start prompts with ``<image>\\n``); without one, the
                 images open the turn, as before.
  conversation   ``--messages_column``: OpenAI ``messages`` (roles system/user/assistant; content a
                 string or parts ``text`` / ``image_url`` / ``image``) or LLaVA ``conversations``
                 (``from`` human/gpt/system, ``value`` text with ``<image>`` placeholders). Placeholders
                 take the images of ``--image_column`` in order; their counts must agree.

A row that cannot be trained raises :class:`BadRow` with the reason; the caller lists it with the
other unusable rows (``--on_bad_image``). Images here are references (paths/URLs): prepare verifies
them and :func:`to_example` writes the verified files into Axolotl's ``messages`` shape, each image
part where it stands in the turn (our LLaVA templates and Qwen2-VL's render parts in order).

Only text of system/user/assistant turns and images of user turns are accepted: an image in an
assistant turn would be dropped by every chat template (and its tokens mis-counted), so it is a bad row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

PLACEHOLDER = "<image>"
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
CONVERSATION_COLUMNS = ("messages", "conversations")
_PLACEHOLDER_SPLIT = re.compile(r"\s*<image>\s*")


class BadRow(Exception):
    """This row cannot be trained; ``str(exc)`` says why (shown in the bad-row report)."""


@dataclass
class Turn:
    role: str  # system | user | assistant
    # ("text", str) | ("image", ref) | ("slot", None): a placeholder filled from the image column
    parts: list[tuple[str, str | None]] = field(default_factory=list)

    def images(self) -> list[str]:
        return [v for k, v in self.parts if k == "image" and v]


def split_placeholders(text: str) -> list[tuple[str, str | None]]:
    """Text with ``<image>`` placeholders → text parts and empty image slots, in order."""
    pieces = _PLACEHOLDER_SPLIT.split(text)
    parts: list[tuple[str, str | None]] = []
    for i, piece in enumerate(pieces):
        if i:
            parts.append(("slot", None))
        if piece.strip():
            parts.append(("text", piece.strip()))
    return parts


def plain_turns(prompt: str, response: str, images: list[str]) -> list[Turn]:
    """The spec's row: one user turn (images + prompt) and one assistant turn."""
    if PLACEHOLDER in response:
        raise BadRow(f"the response contains {PLACEHOLDER!r} (an image can only be in the prompt)")
    user = Turn("user", split_placeholders(prompt))
    turns = [user, Turn("assistant", [("text", response)])]
    return fill_slots(turns, images)


def parse_conversation(cell) -> list[Turn]:
    """A ``messages``/``conversations`` cell (JSON text, or the nested list itself) → turns, images unfilled."""
    data = cell
    if isinstance(cell, str):
        try:
            data = json.loads(cell)
        except json.JSONDecodeError as exc:
            raise BadRow(f"not a JSON conversation ({exc.msg} at character {exc.pos})") from None
    if isinstance(data, dict):  # a whole record: {"messages": [...]} / {"conversations": [...]}
        data = next((data[k] for k in CONVERSATION_COLUMNS if k in data), data)
    if not isinstance(data, list) or not data:
        raise BadRow("the conversation is empty or not a list of turns")
    turns = [_turn(i, t) for i, t in enumerate(data)]
    if not any(t.role == "assistant" for t in turns):
        raise BadRow("the conversation has no assistant turn (nothing to train on)")
    return turns


def _turn(i: int, raw) -> Turn:
    if not isinstance(raw, dict):
        raise BadRow(f"turn {i} is not an object")
    llava = "from" in raw or "value" in raw
    role_key, content_key = ("from", "value") if llava else ("role", "content")
    role = ROLES.get(str(raw.get(role_key, "")).strip().lower())
    if role is None:
        raise BadRow(
            f"turn {i} has role {raw.get(role_key)!r} (use system/user/assistant, or LLaVA's human/gpt/system)"
        )
    content = raw.get(content_key)
    turn = Turn(role)
    if content is None:
        pass
    elif isinstance(content, str):
        turn.parts = split_placeholders(content)
    elif isinstance(content, list):
        for j, part in enumerate(content):
            turn.parts.extend(_part(i, j, part))
    else:
        raise BadRow(f"turn {i} content is neither text nor a list of parts")
    if turn.role != "user" and any(k != "text" for k, _ in turn.parts):
        raise BadRow(f"turn {i} ({turn.role}) holds an image; only user turns can carry images")
    if turn.role == "assistant" and not any(k == "text" and v for k, v in turn.parts):
        raise BadRow(f"turn {i} (assistant) is empty")
    return turn


def _part(i: int, j: int, part) -> list[tuple[str, str | None]]:
    if isinstance(part, str):
        return split_placeholders(part)
    if not isinstance(part, dict):
        raise BadRow(f"turn {i} part {j} is not an object")
    kind = part.get("type") or ("text" if "text" in part else "image" if "image" in part else "")
    if kind == "text":
        return split_placeholders(str(part.get("text") or ""))
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if not url:
            raise BadRow(f"turn {i} part {j}: image_url has no url")
        return [("image", str(url))]
    if kind == "image":
        value = part.get("image") or part.get("path") or part.get("url")
        if not value:  # a bare {"type": "image"}: a slot for the image column
            return [("slot", None)]
        return [("image", _part_ref(value))]
    raise BadRow(f"turn {i} part {j} has type {kind!r} (use text, image_url or image)")


def _part_ref(value) -> str:
    """An image part's value: a path/URL string, or a stored reference (the data contract's struct),
    kept as JSON text until :func:`resolve_images` turns it into a file."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return _STORED + json.dumps(value, sort_keys=True)
    raise BadRow("an image part holds neither a reference nor a path")


_STORED = "\0stored:"


def resolve_images(turns: list[Turn], refs_of) -> list[Turn]:
    """Every embedded image part through ``refs_of(cell) -> list[str]`` (``mixtrain.images.cell_refs``):
    relative paths resolved, stored references made files."""
    for t in turns:
        parts: list[tuple[str, str | None]] = []
        for kind, value in t.parts:
            if kind != "image" or value is None:
                parts.append((kind, value))
                continue
            cell = json.loads(value[len(_STORED) :]) if value.startswith(_STORED) else value
            found = refs_of(cell)
            if not found:
                raise BadRow("an image part names no image")
            parts.extend(("image", r) for r in found)
        t.parts = parts
    return turns


def fill_slots(turns: list[Turn], images: list[str]) -> list[Turn]:
    """Put the image column's images into the turns' placeholders, in order.

    No placeholder at all: the images open the first user turn (the spec's row; LLaVA data without
    ``<image>``). Otherwise every placeholder takes one image and the counts must agree.
    """
    slots = sum(1 for t in turns for k, _ in t.parts if k == "slot")
    if not slots:
        if images:
            first = next((t for t in turns if t.role == "user"), None)
            if first is None:
                raise BadRow("the row has images but the conversation has no user turn to hold them")
            first.parts[:0] = [("image", ref) for ref in images]
        return turns
    if slots != len(images):
        raise BadRow(f"{slots} {PLACEHOLDER} placeholder(s) but {len(images)} image(s) in the image column")
    queue = list(images)
    for t in turns:
        t.parts = [("image", queue.pop(0)) if k == "slot" else (k, v) for k, v in t.parts]
    return turns


def image_refs(turns: list[Turn]) -> list[str]:
    return [v for t in turns for k, v in t.parts if k == "image" and v]


def to_example(turns: list[Turn], files: dict[str, str], *, image_column: bool = False) -> dict:
    """The Axolotl example: ``messages`` with each image part where it stands.

    ``files`` maps each reference to its verified local file. ``image_column``: the images go in an
    ``images`` list beside bare placeholders, the form in which Axolotl applies ``image_size``.
    """
    messages = []
    images: list[str] = []
    for t in turns:
        content: list[dict] = []
        for kind, value in t.parts:
            if kind == "text":
                content.append({"type": "text", "text": value})
            elif image_column:
                content.append({"type": "image"})
                images.append(files[str(value)])
            else:
                content.append({"type": "image", "path": files[str(value)]})
        messages.append({"role": t.role, "content": content})
    example: dict = {"messages": messages}
    if image_column:
        example["images"] = images
    return example
