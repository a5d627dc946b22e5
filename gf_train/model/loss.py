"""Training loss pieces: token cross entropy and the L2Wrap logit regulariser (spec §7.6, §13.14).

L2Wrap leaves the loss value untouched and, in backward, adds 1e-4/(B·T) · max_v z to the gradient of
each position's arg-max logit; like the reference this extra gradient is not multiplied by the
incoming loss gradient (so it is not scaled by gradient accumulation).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

L2WRAP_COEF = 1e-4


class L2Wrap(torch.autograd.Function):
    @staticmethod
    def forward(ctx, loss: Tensor, logits: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_loss: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        (logits,) = ctx.saved_tensors  # [B, T, V]
        n_tok = logits.numel() // logits.shape[-1]
        maxx, ids = torch.max(logits, dim=-1, keepdim=True)
        g = torch.zeros_like(logits).scatter_(-1, ids, maxx * (L2WRAP_COEF / n_tok))
        return grad_loss, g


def lm_loss(logits: Tensor, targets: Tensor, l2wrap: bool) -> Tensor:
    """Mean token cross entropy of logits [B, T, V] against targets [B, T] (computed in fp32; -100 is
    ignored), with L2Wrap attached when ``l2wrap`` and autograd is on. The value is the plain CE."""
    if targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets{tuple(targets.shape)} must match logits{tuple(logits.shape[:-1])}")
    loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.reshape(-1))
    if l2wrap and torch.is_grad_enabled() and logits.requires_grad:
        loss = L2Wrap.apply(loss, logits)
    return loss
