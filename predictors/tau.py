"""TAU (Tan et al., CVPR 2023, "Temporal Attention Unit: Towards Efficient Spatiotemporal Predictive Learning"):
SimVP's encoder and decoder around N_T temporal attention units, trained with MSE plus the differential divergence
regularisation.

A predictor of its own rather than a `simvp` translator because OpenSTL makes it one: a method (openstl/methods/
tau.py) whose model is `SimVP_Model(model_type='tau')` and whose training step adds `alpha * diff_div_reg`. The
model is vpbench's SimVP with the `tau` attention (predictors/simvp.py: `LargeKernelAttention(kind="tau")`, OpenSTL's
`TAUSubBlock`: gSTA's block with the gate replaced by a large-kernel attention times a squeeze-excitation, both
multiplying the input), so OpenSTL's TAU checkpoints load through SimVP's layout.

The regularisation: for consecutive predicted frames and consecutive true frames, softmax(difference / 0.1) over
each difference's C*H*W values, and the KL divergence of the predicted from the true distribution, as OpenSTL's
`diff_div_reg` computes it: its elements averaged over batch, time and pixels (not summed over pixels), and zero
for fewer than three predicted frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vpbench import POSITIVE, at_least, register_predictor, setting
from vpbench.predictors.simvp import OPENSTL, SimVP, SimVPConfig


@dataclass
class TAUConfig(SimVPConfig):
    translator: Literal["tau"] = setting("tau", "the temporal attention unit (TAU's only translator)")
    alpha: float = setting(0.1, "weight of the differential divergence regularisation", at_least(0))
    ddr_temperature: float = setting(0.1, "softmax temperature of the regularisation (OpenSTL's `tau`)", POSITIVE)


def differential_divergence(prediction: Tensor, target: Tensor, temperature: float = 0.1, eps: float = 1e-12) -> Tensor:
    """OpenSTL's `diff_div_reg` (openstl/methods/tau.py): the mean over [B, T-1, C*H*W] of p * log(p / (q + eps) + eps),
    p and q the softmax over C*H*W of the predicted and true frame differences / `temperature`; 0 when T <= 2."""
    b, t = prediction.shape[:2]
    if t <= 2:
        return prediction.new_zeros(())
    p = F.softmax((prediction[:, 1:] - prediction[:, :-1]).reshape(b, t - 1, -1) / temperature, dim=-1)
    q = F.softmax((target[:, 1:] - target[:, :-1]).reshape(b, t - 1, -1) / temperature, dim=-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()


@register_predictor("tau")
class TAU(SimVP):
    """TAU (Tan et al. 2023): SimVP with temporal attention units, trained with the differential divergence loss."""

    Config = TAUConfig
    checkpoint_layouts = (OPENSTL,)
    presets = {
        # OpenSTL configs/mmnist/TAU.py lines 5-16 (its 44.7M / 16.0G row): OneCycle, 200 epochs x 625 iterations.
        "mmnist": dict(hid_S=64, hid_T=512, N_S=4, N_T=8, alpha=0.1, batch_size=16, lr=1e-3, drop_path=0.0,
                       lr_schedule="onecycle", max_iterations=125_000, val_every=5_000),
        # OpenSTL configs/kth/TAU.py lines 6-15 (batch_size the file's, per GPU: "bs = 4 x 4GPUs", as simvp's kth
        # preset) and configs/human/TAU.py lines 6-15 (no sched: OpenSTL's default, onecycle, openstl/utils/parser.py
        # line 157); iterations at the harness default.
        "kth-10to20": dict(hid_S=64, hid_T=256, N_S=2, N_T=6, alpha=0.1, batch_size=4, lr=1e-3, drop_path=0.1,
                           lr_schedule="onecycle"),
        "human36m-openstl": dict(hid_S=64, hid_T=512, N_S=4, N_T=8, alpha=0.1, batch_size=16, lr=1e-3, drop_path=0.1,
                                 lr_schedule="onecycle"),
        # CPU-sized, as simvp's.
        "moving-digits": dict(SimVP.presets["moving-digits"]),
        "tiny": dict(SimVP.presets["tiny"]),
    }

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        context, target = clip[:, : self.spec.context], clip[:, self.spec.context:]
        prediction = self(context, target.shape[1])
        regulariser = differential_divergence(prediction, target, self.config.ddr_temperature)
        return F.mse_loss(prediction, target) + self.config.alpha * regulariser
