"""RMSprop computed the way TensorFlow computes it, for A2C settings published with it.

OpenAI Baselines' A2C ran on TensorFlow's RMSprop, and the RL Zoo's Atari A2C asks SB3 for an
optimizer that imitates it (``RMSpropTFLike``). ``torch.optim.RMSprop`` differs in two places:

- it starts the running average of squared gradients ``v`` at 0, TensorFlow at 1. From 0, the
  first step is ``lr * g / sqrt((1 - alpha) g^2) = lr / sqrt(1 - alpha)`` per weight whatever the
  gradient's size: 10x the learning rate at alpha 0.99, for every weight at once. From 1, the
  first steps are about ``lr * g``, and the average reaches the gradients' own scale over the
  first few hundred updates (``alpha^t`` of the 1 is left after ``t`` updates);
- it adds ``eps`` outside the square root (``g / (sqrt(v) + eps)``), TensorFlow inside
  (``g / sqrt(v + eps)``): with eps 1e-5 the floor is sqrt(1e-5) = 3.2e-3 instead of 1e-5.

Everything else (weight decay added to the gradient, momentum on the scaled step, the centred
variant) is as torch's. Use it with ``algo.optimizer._target_=rlexp.algos.optim.RMSpropTFLike``.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch


class RMSpropTFLike(torch.optim.Optimizer):
    """RMSprop with TensorFlow's starting average (1) and eps (inside the square root)."""

    def __init__(self, params: Iterable, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False) -> None:
        for name, value in (("lr", lr), ("eps", eps), ("weight_decay", weight_decay), ("momentum", momentum)):
            if value < 0.0:
                raise ValueError(f"RMSpropTFLike: {name} must be >= 0 (got {value})")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"RMSpropTFLike: alpha must be in [0, 1) (got {alpha})")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("RMSpropTFLike does not take sparse gradients")
                grad = p.grad if group["weight_decay"] == 0 else p.grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["square_avg"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if group["momentum"] > 0:
                        state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    if group["centered"]:
                        state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                square_avg = state["square_avg"]
                square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
                if group["centered"]:
                    grad_avg = state["grad_avg"]
                    grad_avg.mul_(alpha).add_(grad, alpha=1 - alpha)
                    denom = square_avg.addcmul(grad_avg, grad_avg, value=-1).add_(eps).sqrt_()
                else:
                    denom = square_avg.add(eps).sqrt_()
                if group["momentum"] > 0:
                    buffer = state["momentum_buffer"]
                    buffer.mul_(group["momentum"]).addcdiv_(grad, denom)
                    p.add_(buffer, alpha=-lr)
                else:
                    p.addcdiv_(grad, denom, value=-lr)
        return loss
