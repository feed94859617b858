"""PhyDNet (Le Guen & Thome, CVPR 2020, "Disentangling Physical Dynamics from Unknown Factors for Unsupervised
Video Prediction"): a recurrent encoder-decoder whose latent frame is carried forward by two branches side by side,
a PhyCell whose filters are held to finite differences (a PDE in latent space) and a ConvLSTM for what the PDE
misses.

The network, as OpenSTL builds it (openstl/models/phydnet_model.py, openstl/modules/phydnet_modules.py: the authors'
vincent-leguen/PhyDNet models/models.py with OpenSTL's `patch_size` choosing the encoder's stride):
- E: three 3x3 convolutions (GroupNorm(16), LeakyReLU(0.2)) with strides 2, 1 and downsample / 2, from the frame to
  the latent frame of 2 x `width` channels on an H/downsample x W/downsample grid; then one encoder per branch, Ep
  and Er, two such convolutions each (stride 1).
- PhyCell (one cell): prediction h~ = h + Phi(h), Phi a k x k convolution to k^2 channels, GroupNorm(k), a 1x1
  convolution back; correction h' = h~ + K * (Ep(x) - h~) with the gain K = sigmoid(3x3 convolution of [Ep(x), h]).
- ConvLSTM: stacked cells, each one 3x3 convolution with bias of [input, h] to the gates i, f, o, g, no forget bias.
- Dp and Dr (two 3x3 transposed convolutions of stride 1 each, GroupNorm(16), LeakyReLU) decode the PhyCell's state
  and the top ConvLSTM's output; their sum goes through the shared D (transposed convolutions back to the frame), and
  a sigmoid gives the next frame.
One step reads a frame and predicts the next, so the time loop is the shared recurrent base's (OpenSTL's "encoder"
and "decoder" phases run the same step: context frames in, then each prediction fed back). The reference's forward
also decodes each branch on its own (`out_phys`, `out_conv`, "for visualization") and discards both: not computed here.

Training, as OpenSTL's method and the authors' main.py train it:
- loss: the sum over the T-1 outputs (the context reconstructions included) of each frame's MSE, plus the moment
  loss: for each input channel of Phi's first convolution, the MSE between the moment matrices of its k^2 filters
  (`kernel_moments`) and the k^2 unit matrices, filter k*i + j held to the derivative of order (i, j) (of order i down
  the rows, j across the columns), summed over the input channels;
- teacher forcing decided once per batch: with probability p every future step of every clip reads the true frame,
  otherwise every one reads the prediction (the context always reads the truth). OpenSTL lowers p by 0.003 per epoch
  (to 0 after 333 epochs; the authors' main.py by 0.01); here p falls linearly over iterations (`sampling_stop_iter`),
  at the mmnist preset equal to OpenSTL's at the start of each 625-iteration epoch.
OpenSTL's training step then has a bug: `PhyDNet.training_step` (openstl/methods/phydnet.py, both the Lightning
and the v0.3.0 branch) takes the model's loss, a number, and back-propagates the MSE between it and the target frames,
mean((L - y)^2): L's gradient scaled by 2 (L - mean(y)), which vanishes, then pushes L up, as L reaches the targets'
mean pixel value. The predictor trains on L, as the authors do; `reference_loss=true` trains on OpenSTL's MSE.

Checkpoints: OpenSTL's load (`OPENSTL`): its model registers the PhyCell and the ConvLSTM twice, under the model
and under its encoder, so its files hold those tensors twice, and they hold K2M's constant matrices: both dropped.
OpenSTL's model, written by OpenSTL's code at a small width (tests/fixtures/openstl/make.py), predicts the same
here to 1e-6, and its training loss and OpenSTL's method's are what `training_loss` computes (tests/test_phydnet.py).

Size at OpenSTL's mmnist config (width 32, k = 7, ConvLSTM 128, 128, 64; 10 -> 10 at 64x64): 3,091,732 parameters
and 15.33G FLOPs, OpenSTL's table's 3.1M / 15.3G (its fvcore trace drops the discarded branch decodings as well); at
KTH 10 -> 20, 128x128: 93.57G, the table's 93.6G (tests/test_phydnet.py counts both by hand). The table's Human3.6M
row (4.2M) is not what OpenSTL's code builds at configs/human/PhyDNet.py: its widths are fixed, and 3 channels make
3,092,886 parameters.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vpbench import (COUNT, ODD, RecurrentConfig, RecurrentPredictor, ReferenceLayout, Rule, UserError, VideoSpec,
                     register_predictor, setting, tiny_preset)
from vpbench.layers import patchify

MULTIPLE_OF_16 = Rule("a multiple of 16 (GroupNorm's 16 groups)", lambda v: v >= 16 and v % 16 == 0)
SLOPE = 0.2  # LeakyReLU of every encoder and decoder block (DCGAN's)
NORM_GROUPS = 16
# OpenSTL lowers the teacher-forcing probability by this much per epoch; its default run is 200 epochs.
FORCING_FALL_PER_EPOCH, OPENSTL_EPOCHS = 0.003, 200


@dataclass
class PhyDNetConfig(RecurrentConfig):
    patch_size: int = 1  # the encoder downsamples; patches would only stack pixels into its first convolution
    scheduled_sampling: bool = setting(True, "teacher forcing in training, decided once per batch with a falling "
                                             "probability: every future step reads the truth, or none does")
    downsample: Literal[2, 4] = setting(4, "the encoder's stride: the cells run on H/downsample x W/downsample "
                                           "(OpenSTL's patch_size, 2 or 4)")
    width: int = setting(32, "channels of the encoder's first two convolutions; the latent frame both branches read "
                             "has twice as many", MULTIPLE_OF_16)
    phycell_kernel: int = setting(7, "k of the PhyCell's k x k physics filters, k^2 per input channel: one per "
                                     "derivative up to order k-1 along each axis", ODD)
    convlstm_hidden: tuple[int, ...] = setting((128, 128, 64), "hidden channels of each stacked ConvLSTM cell", COUNT)
    convlstm_kernel: int = setting(3, "ConvLSTM gate convolution kernel", ODD)
    reference_loss: bool = setting(False, "train on OpenSTL's loss: the MSE between the summed loss, a number, and "
                                          "the target frames (its PhyDNet.training_step; see the module doc)")


def kernel_moments(kernels: Tensor) -> Tensor:
    """The moment matrices of k x k kernels [..., k, k], in float64: m[p, q] = sum over taps (a, b) of
    kernel[a, b] (a - c)^p (b - c)^q / (p! q!), c = (k - 1) // 2 the centre tap. Filtering with such a kernel
    approximates sum_pq m[p, q] d^(p+q) / da^p db^q (Taylor), so m = the unit matrix at (i, j) makes it the
    derivative of order (i, j). A linear map, m = M kernel M^T (OpenSTL's K2M)."""
    k = kernels.shape[-1]
    offsets = torch.arange(k, dtype=torch.float64, device=kernels.device) - (k - 1) // 2
    orders = torch.arange(k, device=kernels.device)
    factorials = torch.tensor([math.factorial(p) for p in range(k)], dtype=torch.float64, device=kernels.device)
    powers = offsets[None, :] ** orders[:, None] / factorials[:, None]  # M[p, a]
    return powers @ kernels.double() @ powers.T


def _block(c_in: int, c_out: int, stride: int = 1, transposed: bool = False) -> nn.Sequential:
    """DCGAN's 3x3 block: convolution (transposed: doubling the size at stride 2), GroupNorm(16), LeakyReLU."""
    conv = (nn.ConvTranspose2d(c_in, c_out, 3, stride, padding=1, output_padding=stride - 1) if transposed
            else nn.Conv2d(c_in, c_out, 3, stride, padding=1))
    return nn.Sequential(conv, nn.GroupNorm(NORM_GROUPS, c_out), nn.LeakyReLU(SLOPE))


class PhyCell(nn.Module):
    """h~ = h + Phi(h) (prediction), h' = h~ + K (x - h~) (correction), K = sigmoid(conv [x, h])."""

    def __init__(self, channels: int, kernel: int) -> None:
        super().__init__()
        self.phi = nn.Sequential(nn.Conv2d(channels, kernel * kernel, kernel, padding=kernel // 2),
                                 nn.GroupNorm(kernel, kernel * kernel), nn.Conv2d(kernel * kernel, channels, 1))
        self.gain = nn.Conv2d(2 * channels, channels, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        gain = torch.sigmoid(self.gain(torch.cat([x, h], dim=1)))  # from the previous state, as the reference
        predicted = h + self.phi(h)
        return predicted + gain * (x - predicted)

    def moment_loss(self) -> Tensor:
        """Per input channel, the MSE between the moments of its k^2 filters and the unit matrices, summed."""
        weight = self.phi[0].weight  # [k^2, C, k, k]
        k = weight.shape[-1]
        moments = kernel_moments(weight.transpose(0, 1))  # [C, k^2, k, k]
        units = torch.eye(k * k, dtype=moments.dtype, device=moments.device).view(k * k, k, k)
        return ((moments - units) ** 2).mean(dim=(1, 2, 3)).sum().to(weight.dtype)


class ConvLSTMCell(nn.Module):
    """One convolution with bias of [x, h] to the gates in the order i, f, o, g (the reference's)."""

    def __init__(self, c_in: int, hidden: int, kernel: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(c_in + hidden, 4 * hidden, kernel, padding=kernel // 2)

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


# OpenSTL's encoder / decoder parts and vpbench's names for them.
_OPENSTL_PARTS = {"encoder_E": "encoder", "encoder_Ep": "physics_encoder", "encoder_Er": "residual_encoder",
                  "decoder_Dp": "physics_decoder", "decoder_Dr": "residual_decoder", "decoder_D": "decoder"}


def _openstl_block(match: re.Match[str]) -> str:
    """`encoder.<part>.c<n>.main.<i>.<w>` (and D's last, plain `upc3.<w>`) -> `<part>.<n-1>[.<i>].<w>`."""
    layer = "" if match[3] is None else f".{match[3]}"
    return f"{_OPENSTL_PARTS[match[1]]}.{int(match[2]) - 1}{layer}.{match[4]}"


_OPENSTL_PHYCELL = {"F.conv1": "phi.0", "F.bn1": "phi.1", "F.conv2": "phi.2", "convgate": "gain"}


# OpenSTL's PhyDNet_Model: the PhyCell and the ConvLSTM are attributes of the model and of its encoder (one module
# under two names, so its files hold them twice); `k2m` holds the constant matrices `kernel_moments` computes.
OPENSTL = ReferenceLayout(
    "OpenSTL",
    renames=((rf"encoder\.({'|'.join(_OPENSTL_PARTS)})\.(?:c|upc)(\d)(?:\.main\.(\d))?\.(weight|bias)", _openstl_block),
             (r"encoder\.phycell\.cell_list\.0\.(F\.conv1|F\.bn1|F\.conv2|convgate)\.(weight|bias)",
              lambda m: f"phycell.{_OPENSTL_PHYCELL[m[1]]}.{m[2]}"),
             (r"encoder\.convcell\.cell_list\.(\d+)\.conv\.(weight|bias)", r"convlstm.\1.conv.\2")),
    unused=r"(phycell|convcell|k2m)\..*",
    unused_reason="saves a second time (the PhyCell and the ConvLSTM, also under the encoder) or recomputes (K2M's "
                  "constant matrices)")


@register_predictor("phydnet")
class PhyDNet(RecurrentPredictor):
    """PhyDNet (Le Guen & Thome 2020): a PhyCell held to finite differences beside a ConvLSTM, in latent space."""

    Config = PhyDNetConfig
    checkpoint_layouts = (OPENSTL,)
    fully_convolutional = True  # convolutions and GroupNorm only; the grid is the frame's over downsample
    presets = {
        # OpenSTL configs/mmnist/PhyDNet.py (patch_size 4, lr 1e-3, batch 16, onecycle) with OpenSTL's defaults:
        # 200 epochs of 625 iterations (10,000 clips / 16), teacher forcing falling 0.003 per epoch (0 at 333 epochs).
        "mmnist": dict(downsample=4, batch_size=16, lr=1e-3, lr_schedule="onecycle", max_iterations=125_000,
                       sampling_stop_iter=round(625 / FORCING_FALL_PER_EPOCH), val_every=5_000),
        # OpenSTL configs/kth/PhyDNet.py (as mmnist's) and configs/human/PhyDNet.py (patch_size 4, lr 1e-4, batch 16,
        # cosine, no warm-up). OpenSTL trains epochs of its prepared split, whose length vpbench does not fix:
        # iterations stay at the harness default, and teacher forcing falls as over OpenSTL's default 200 epochs.
        "kth-10to20": dict(downsample=4, batch_size=16, lr=1e-3, lr_schedule="onecycle",
                           sampling_stop_iter=round(80_000 / OPENSTL_EPOCHS / FORCING_FALL_PER_EPOCH)),
        "human36m-openstl": dict(downsample=4, batch_size=16, lr=1e-4, lr_schedule="cosine",
                                 sampling_stop_iter=round(80_000 / OPENSTL_EPOCHS / FORCING_FALL_PER_EPOCH)),
        # CPU-sized (0.6-1.1 iterations a second on one loaded CPU thread): the narrowest encoder GroupNorm(16)
        # allows and one ConvLSTM cell; lr 5e-3 and MSE + 0.1 L1 (as convlstm's preset): in 200 quick iterations,
        # lr 2e-3 with MSE alone left the background grey (median pixel 0.05, SSIM 0.03; PSNR 15.47 dB mean),
        # lr 5e-3 with the L1 term darkened it (median 0.01, SSIM 0.39; 15.75 dB). The 400 iterations took 11.5 min
        # with one thread beside other work: 15.93 dB mean, 18.12 at t+1, SSIM 0.54 on the 1000 test clips (above
        # mean-frame's and blank's PSNR; below blank's SSIM, 0.76, as convlstm's preset is).
        "moving-digits": dict(width=16, phycell_kernel=7, convlstm_hidden=(32,), downsample=4, batch_size=8, lr=5e-3,
                              lr_schedule="cosine", max_iterations=400, quick_iterations=200, sampling_stop_iter=200,
                              val_every=200, grad_clip=1.0, l1_weight=0.1),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    # lr 1e-2: at 5e-3 the 30 steps left the t+1 frame 1 dB below copy-last's.
    presets["tiny"] = tiny_preset(presets["moving-digits"], width=16, phycell_kernel=3, convlstm_hidden=(8,),
                                  lr=1e-2, sampling_stop_iter=15)

    def __init__(self, spec: VideoSpec, config: PhyDNetConfig) -> None:
        super().__init__(spec, config)
        if self.grid[0] % config.downsample or self.grid[1] % config.downsample:
            raise UserError(f"{self.registry_name}: the encoder's downsample {config.downsample} (after patch_size "
                            f"{config.patch_size}) does not divide the frame size {spec.height}x{spec.width}")
        width, latent, inner = config.width, 2 * config.width, config.downsample // 2
        self.encoder = nn.Sequential(_block(self.patch_channels, width, 2), _block(width, width),
                                     _block(width, latent, inner))
        self.physics_encoder = nn.Sequential(_block(latent, latent), _block(latent, latent))
        self.residual_encoder = nn.Sequential(_block(latent, latent), _block(latent, latent))
        self.phycell = PhyCell(latent, config.phycell_kernel)
        inputs = (latent, *config.convlstm_hidden[:-1])
        self.convlstm = nn.ModuleList(ConvLSTMCell(c_in, hidden, config.convlstm_kernel)
                                      for c_in, hidden in zip(inputs, config.convlstm_hidden))
        self.physics_decoder = nn.Sequential(_block(latent, latent, transposed=True),
                                             _block(latent, latent, transposed=True))
        self.residual_decoder = nn.Sequential(_block(config.convlstm_hidden[-1], latent, transposed=True),
                                              _block(latent, latent, transposed=True))
        self.decoder = nn.Sequential(
            _block(latent, width, 2, transposed=True), _block(width, width, transposed=True),
            nn.ConvTranspose2d(width, self.patch_channels, 3, inner, padding=1, output_padding=inner - 1))

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, list[tuple]]:
        size = (self.grid[0] // self.config.downsample, self.grid[1] // self.config.downsample)
        physics = torch.zeros(batch, 2 * self.config.width, *size, device=device, dtype=dtype)
        lstm = [(torch.zeros(batch, hidden, *size, device=device, dtype=dtype),) * 2
                for hidden in self.config.convlstm_hidden]
        return physics, lstm

    def step(self, frame: Tensor, state: tuple[Tensor, list[tuple[Tensor, Tensor]]]
             ) -> tuple[Tensor, tuple[Tensor, list[tuple[Tensor, Tensor]]]]:
        physics, lstm = state
        latent = self.encoder(frame)
        physics = self.phycell(self.physics_encoder(latent), physics)
        x, new_lstm = self.residual_encoder(latent), []
        for cell, (h, c) in zip(self.convlstm, lstm):
            x, c = cell(x, h, c)
            new_lstm.append((x, c))
        decoded = self.physics_decoder(physics) + self.residual_decoder(x)
        return torch.sigmoid(self.decoder(decoded)), (physics, new_lstm)

    def draw_sampling_mask(self, iteration: int, batch: int, length: int, device: torch.device) -> Tensor:
        """Teacher forcing for the whole batch at once: every future step of every clip reads the truth, or none."""
        mask = torch.ones(batch, length - 1, device=device)
        forced = torch.rand((), device=device) < self.sampling_probability(iteration)
        mask[:, self.spec.context:] = forced.float()
        return mask

    def training_loss(self, clip: Tensor, iteration: int) -> Tensor:
        """The sum over the T-1 outputs of each one's MSE (plus L1 where `l1_weight` is set) and the PhyCell's moment
        loss; `reference_loss`: OpenSTL's MSE between that sum and the target frames."""
        truth = patchify(clip, self.config.patch_size)
        steps = clip.shape[1] - 1
        out, _ = self.rollout(truth, steps, self.sampling_mask(iteration, clip.shape[0], clip.shape[1], clip.device))
        # frame_loss averages over the outputs, each of the same size: times their number, the sum of the means
        loss = steps * self.frame_loss(out, truth[:, 1:]) + self.phycell.moment_loss()
        if self.config.reference_loss:
            target = clip[:, self.spec.context:]
            return F.mse_loss(loss.expand_as(target), target)
        return loss
