"""Recurrent policies: encoder -> LSTM or GRU core -> MLP torso -> heads (``network.recurrent``).

A recurrent policy carries a hidden state per environment. Here that state is one tensor of
shape (batch, rows, hidden): the core's layers stacked (LSTM: h and c of each layer), the
actor's rows first and then the critic's when they have cores of their own. One tensor is
easy to store per rollout step, to index by environment and to zero where episodes begin.

Everything that runs the core takes ``starts`` (time, batch) booleans: ``starts[t, i]``
zeroes sequence i's state before step t, because step t is the first of a new episode. The
multiplication by zero also blocks the gradient: nothing learnt at step t can flow back
into the previous episode's steps.

Sequences of any length run through the same code: step-by-step collection is a sequence
of length 1, and the update re-runs whole rollouts (or chunks of them) from the state
stored at their first step. Between two time steps where some sequence starts an episode,
``nn.LSTM`` / ``nn.GRU`` run the whole stretch in one call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


CORES = {"lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentCore(nn.Module):
    """An LSTM or GRU over (T, N, features) inputs, with per-step state resets."""

    def __init__(self, kind: str, in_features: int, hidden_size: int, num_layers: int, orthogonal: bool = True):
        super().__init__()
        self.kind, self.hidden_size, self.num_layers = kind, hidden_size, num_layers
        self.rnn = CORES[kind](in_features, hidden_size, num_layers=num_layers)
        self.rows = num_layers * (2 if kind == "lstm" else 1)
        for name, param in self.rnn.named_parameters() if orthogonal else ():  # CleanRL's LSTM init; else torch's own
            if "weight" in name:
                nn.init.orthogonal_(param, 1.0)
            else:
                nn.init.zeros_(param)

    def forward(self, x: torch.Tensor, state: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (T, N, F); state: (N, rows, H); starts: (T, N). Returns (outputs (T, N, H), final state)."""
        keep = (~starts).to(x.dtype).unsqueeze(-1)  # (T, N, 1)
        # cut the sequence where some env starts an episode; inside a stretch the rnn runs in one call
        cuts = [0, *(torch.nonzero(starts[1:].any(dim=1)).flatten() + 1).tolist(), x.shape[0]]
        hidden = state.transpose(0, 1)  # (rows, N, H)
        outputs = []
        for begin, end in zip(cuts[:-1], cuts[1:]):
            hidden = hidden * keep[begin].unsqueeze(0)
            out, carried = self.rnn(x[begin:end], self.split(hidden))
            hidden = self.join(carried)
            outputs.append(out)
        return torch.cat(outputs) if len(outputs) > 1 else outputs[0], hidden.transpose(0, 1)

    def split(self, hidden: torch.Tensor) -> Any:
        if self.kind == "lstm":
            return hidden[: self.num_layers].contiguous(), hidden[self.num_layers:].contiguous()
        return hidden.contiguous()

    def join(self, carried: Any) -> torch.Tensor:
        return torch.cat(carried) if self.kind == "lstm" else carried
