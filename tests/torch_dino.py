"""PyTorch DINO, the independent reference of tests/test_dino_reference.py (not a test module).

Written from facebookresearch/dino (main_dino.py: ``DINOLoss``, ``train_one_epoch``,
``get_params_groups`` and ``cancel_gradients_last_layer`` via utils.py; vision_transformer.py:
``DINOHead``; utils.py: ``MultiCropWrapper``, ``clip_gradients``; ``cosine_scheduler`` is in
dino_cosine_scheduler.py) and timm's ``adaptive_clip_grad`` (the paper's clipping), single
process (DINO's all-reduce of the centre is then the identity). Nothing here imports cellssl_jax.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DINOHead(nn.Module):
    """vision_transformer.DINOHead (use_bn=False)."""

    def __init__(self, in_dim, out_dim, norm_last_layer=True, nlayers=3, hidden_dim=2048,
                 bottleneck_dim=256):
        super().__init__()
        layers = [nn.Linear(in_dim, hidden_dim if nlayers > 1 else bottleneck_dim)]
        if nlayers > 1:
            layers.append(nn.GELU())
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU()]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
        self.mlp = nn.Sequential(*layers)
        self.apply(self._init_weights)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)

    def forward(self, x):
        x = self.mlp(x)
        x = F.normalize(x, dim=-1, p=2)
        return self.last_layer(x)


class MultiCropWrapper(nn.Module):
    """utils.MultiCropWrapper: the backbone once per run of same-resolution crops."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        idx_crops = torch.cumsum(torch.unique_consecutive(
            torch.tensor([inp.shape[-1] for inp in x]), return_counts=True)[1], 0)
        start_idx, output = 0, torch.empty(0).to(x[0].device)
        for end_idx in idx_crops:
            output = torch.cat((output, self.backbone(torch.cat(x[start_idx:end_idx]))))
            start_idx = end_idx
        return self.head(output)


class DINOLoss(nn.Module):
    """main_dino.DINOLoss, with the teacher temperature given per iteration."""

    def __init__(self, out_dim, ncrops, student_temp=0.1, center_momentum=0.9):
        super().__init__()
        self.student_temp, self.center_momentum, self.ncrops = student_temp, center_momentum, ncrops
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output, temp):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / temp, dim=-1).detach().chunk(2)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = self.center * self.center_momentum + batch_center * (
            1 - self.center_momentum)


def get_params_groups(model):
    """utils.get_params_groups: no weight decay on biases and 1-D parameters."""
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


def clip_gradients(model, clip):
    """utils.clip_gradients: each tensor's gradient to norm <= clip."""
    for _, p in model.named_parameters():
        if p.grad is not None:
            clip_coef = clip / (p.grad.data.norm(2) + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)


def cancel_gradients_last_layer(epoch, model, freeze_last_layer):
    """utils.cancel_gradients_last_layer: AdamW then skips these parameters."""
    if epoch >= freeze_last_layer:
        return
    for n, p in model.named_parameters():
        if "last_layer" in n:
            p.grad = None


def train(student, teacher, crops, *, iters, lr, wd, momentum, teacher_temp, freeze_iters,
          clip_mode, clip, student_temp=0.1, center_momentum=0.9):
    """``iters`` iterations of main_dino.train_one_epoch on the same ``crops`` (a list of NCHW
    views, globals first), one iteration per "epoch" so that the freeze counts iterations.
    Schedules are per-iteration arrays. Returns the loss of each iteration and the DINO loss
    module (its centre)."""
    from timm.utils.agc import adaptive_clip_grad

    for p in teacher.parameters():
        p.requires_grad = False
    loss_fn = DINOLoss(student.head.last_layer.weight_v.shape[0], len(crops), student_temp,
                       center_momentum)
    optimizer = torch.optim.AdamW(get_params_groups(student))
    losses = []
    for it in range(iters):
        for i, param_group in enumerate(optimizer.param_groups):
            param_group["lr"] = lr[it]
            if i == 0:
                param_group["weight_decay"] = wd[it]
        teacher_output = teacher(crops[:2])
        student_output = student(crops)
        loss = loss_fn(student_output, teacher_output, teacher_temp[it])
        optimizer.zero_grad()
        loss.backward()
        if clip_mode == "norm":
            clip_gradients(student, clip)
        else:
            adaptive_clip_grad([p for p in student.parameters() if p.grad is not None], clip)
        cancel_gradients_last_layer(it, student, freeze_iters)
        optimizer.step()
        with torch.no_grad():
            m = momentum[it]
            for param_q, param_k in zip(student.parameters(), teacher.parameters(), strict=True):
                param_k.data.mul_(m).add_((1 - m) * param_q.detach().data)
        losses.append(loss.item())
    return losses, loss_fn
