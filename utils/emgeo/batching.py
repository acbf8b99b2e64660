"""Token-id lists to padded batches, and chat samples to token ids with answer masks.

The one home for padding: right-padding for training and the organism, left-padding for
generation and reading the last position. Chat helpers take any tokenizer with a chat template
(Hugging Face's ``apply_chat_template``); this module imports no model library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

IGNORE = -100  # label of a position the loss skips (prompt and padding), as in PyTorch and HF


def right_pad(seqs: Sequence[Sequence[int]], pad: int) -> Int[Tensor, "batch pos"]:
    """Right-pad token id lists into one tensor."""
    width = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [pad] * (width - len(s)) for s in seqs])


def left_pad(
    rows: Sequence[Sequence[int]], pad: int
) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Left-pad token id lists (every row's last token in the last column) and their mask."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def render_chat(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = False) -> str:
    """The chat template applied to ``messages``, as text (special tokens written out)."""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def encode_sample(tokenizer: Any, sample: dict, max_length: int) -> tuple[list[int], int]:
    """Token ids of one chat and how many of them are prompt (everything before the last answer).

    The prompt is the chat up to the last message rendered with the generation prompt; the
    answer is what the full chat adds to it (the answer and the template's end-of-turn). Both
    are tokenized separately, so the boundary is exact. Ids are cut to ``max_length``.
    """
    messages = sample["messages"]
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("each sample's last message must be the assistant's answer to train on")
    prompt = render_chat(tokenizer, messages[:-1], add_generation_prompt=True)
    full = render_chat(tokenizer, messages)
    if not full.startswith(prompt):
        raise ValueError(
            "this tokenizer's chat template does not render the prompt as a prefix of the chat: "
            "pass a tokenizer whose template adds the generation prompt verbatim"
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    ids = (prompt_ids + answer_ids)[:max_length]
    return ids, min(len(prompt_ids), len(ids))


def answer_labels(ids: list[int], n_prompt: int) -> list[int]:
    """The training targets of one chat: its ids, with the prompt positions set to IGNORE."""
    return [IGNORE] * n_prompt + ids[n_prompt:]


def collate(
    encoded: Sequence[tuple[list[int], int]], pad_id: int
) -> dict[str, Int[Tensor, "batch pos"]]:
    """Right-pad a batch: input ids, attention mask, and labels (IGNORE on prompt and padding)."""
    width = max(len(ids) for ids, _ in encoded)
    rows = [row for row, _ in encoded]
    labels = [answer_labels(row, n) + [IGNORE] * (width - len(row)) for row, n in encoded]
    return {
        "input_ids": right_pad(rows, pad_id),
        "attention_mask": right_pad([[1] * len(row) for row in rows], 0),
        "labels": torch.tensor(labels),
    }


def chat_batch(
    tokenizer: Any, samples: Sequence[dict], max_length: int = 128
) -> tuple[dict[str, Int[Tensor, "batch pos"]], Float[Tensor, "batch pos"]]:
    """Left-padded token ids of chat samples rendered with the tokenizer's chat template, and the
    mask of their answer tokens (the last assistant turn and the template's end of turn)."""
    encoded = [encode_sample(tokenizer, s, max_length) for s in samples]
    ids, attention = left_pad([row for row, _ in encoded], tokenizer.pad_token_id)
    answer, _ = left_pad([[0] * n + [1] * (len(row) - n) for row, n in encoded], 0)
    enc = {"input_ids": ids, "attention_mask": attention}
    return enc, answer.float()


def common_prefix(encoded: Sequence[tuple[list[int], int]]) -> int:
    """How many leading tokens all of ``encoded`` (:func:`encode_sample` results) share: never
    an answer token, and never a chat's every token."""
    rows = [ids for ids, _ in encoded]
    limit = min(min(n for _, n in encoded), min(map(len, rows)) - 1)
    n = 0
    while n < limit and all(row[n] == rows[0][n] for row in rows):
        n += 1
    return n


def split_after_prefix(
    encoded: Sequence[tuple[list[int], int]], pad_id: int, n: int
) -> tuple[dict[str, Int[Tensor, "batch _"]], Float[Tensor, "batch suffix"]]:
    """Encoded chats that share their first ``n`` tokens (:func:`common_prefix`) as the model
    inputs that continue from those tokens' keys and values: the rest of each chat, right-padded,
    with an attention mask over prefix and rest (``n + suffix`` columns); and the answer mask of
    the rest."""
    rows = [ids for ids, _ in encoded]
    if any(k < n or len(row) <= n or row[:n] != rows[0][:n] for row, k in encoded):
        raise ValueError(f"these chats do not all share their first {n} prompt tokens")
    rest = [row[n:] for row in rows]
    keep = right_pad([[1] * len(r) for r in rest], 0)
    enc = {
        "input_ids": right_pad(rest, pad_id),
        "attention_mask": torch.cat([torch.ones(len(rows), n, dtype=keep.dtype), keep], 1),
    }
    answer = right_pad([[0] * (k - n) + [1] * (len(row) - k) for row, k in encoded], 0)
    return enc, answer.float()
