"""Minibatches: every transition exactly once per epoch, short remainders folded in."""

import torch

from rlexp.data.rollout import Batch, minibatches


def numbered_batch(n: int) -> Batch:
    ids = torch.arange(n, dtype=torch.float32)
    return Batch(ids.unsqueeze(1), ids.long(), ids, ids, ids, ids)


def test_each_transition_once_per_epoch_and_remainder_folded():
    batch = numbered_batch(1000)
    sizes, seen = [], []
    for mb in minibatches(batch, 256, generator=torch.Generator().manual_seed(0)):
        sizes.append(len(mb))
        seen += mb.log_probs.long().tolist()
        assert torch.equal(mb.obs[:, 0], mb.returns) and torch.equal(mb.actions.float(), mb.values)  # fields stay aligned
    assert sizes == [256, 256, 256, 232]           # round(1000 / 256) = 4 minibatches
    assert sorted(seen) == list(range(1000)) and seen != list(range(1000))  # all of them, shuffled
    assert [len(mb) for mb in minibatches(numbered_batch(1100), 256)] == [256, 256, 256, 332]  # 76 left: folded


def test_a_single_minibatch_is_the_whole_batch():
    batch = numbered_batch(250)  # 256 requested, 250 valid (autoreset steps dropped)
    (only,) = list(minibatches(batch, 256))
    assert only is batch
