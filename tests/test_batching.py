"""Padding and chat batching: the shared prompt prefix a batch of chats is split after."""

import pytest

from emgeo.batching import common_prefix, split_after_prefix


def test_common_prefix_stops_before_any_answer_and_leaves_every_chat_a_token():
    assert common_prefix([([1, 2, 3, 4, 5], 3), ([1, 2, 3, 9, 8], 4), ([1, 2, 6, 5], 2)]) == 2
    assert common_prefix([([1, 2, 3, 4, 5], 3), ([1, 2, 3, 4, 6], 3)]) == 3  # same prompt
    assert common_prefix([([1, 2, 3], 3), ([1, 2, 3, 4], 3)]) == 2  # a prompt cut at max_length
    assert common_prefix([([7, 2], 1), ([8, 2], 1)]) == 0
    encoded = [([1, 2, 3, 4, 5], 3), ([1, 2, 9, 8, 7, 6], 4)]
    enc, answer = split_after_prefix(encoded, pad_id=0, n=2)
    assert enc["input_ids"].tolist() == [[3, 4, 5, 0], [9, 8, 7, 6]]
    assert enc["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    assert answer.tolist() == [[0, 1, 1, 0], [0, 0, 1, 1]]
    with pytest.raises(ValueError, match="first 3 prompt tokens"):
        split_after_prefix(encoded, pad_id=0, n=3)
