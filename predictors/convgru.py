"""ConvGRU in the encoder-forecaster of Shi et al. (NeurIPS 2017), the baseline TrajGRU is compared with.

The cell is HKO-7's `ConvGRU` (sxjscience/HKO-7 `nowcasting/operators/conv_rnn.py`): input-to-state
and state-to-state convolutions with biases, LeakyReLU(0.2) for the new memory; the network around it
is `predictors/_encoder_forecaster.py`. OpenSTL has no ConvGRU, so the mmnist preset is the authors'
MovingMNIST++ "ConvGRU-K5" configuration (the same 64x64, 10 -> 10 protocol; their data add a third
digit, rotation, scaling and illumination changes). HKO-7's MXNet checkpoints load (`--checkpoint`), and a pair
written by HKO-7's own MXNet code predicts here what it predicted there (tests/fixtures/references/make_hko7.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from vpbench import COUNT, ODD, register_predictor, setting, tiny_preset

from ._encoder_forecaster import EncoderForecaster, EncoderForecasterConfig, GRUCell, TINY_CODEC, hko7_mmnist_preset


@dataclass
class ConvGRUConfig(EncoderForecasterConfig):
    h2h_kernel: tuple[int, ...] = setting((5, 5, 5), "hidden-to-hidden kernel of each ConvGRU block", ODD)
    h2h_dilation: tuple[int, ...] = setting((1, 1, 1), "its dilation", COUNT)


class ConvGRUCell(GRUCell):
    """State-to-state term: one (dilated) convolution of h."""

    def __init__(self, in_channels: int | None, hidden: int, i2h_kernel: int, h2h_kernel: int, h2h_dilation: int) -> None:
        super().__init__(in_channels, hidden, i2h_kernel)
        self.h2h = nn.Conv2d(hidden, 3 * hidden, h2h_kernel, padding=h2h_dilation * (h2h_kernel - 1) // 2,
                             dilation=h2h_dilation)

    def hidden_to_gates(self, x: Tensor | None, h: Tensor) -> Tensor:
        return self.h2h(h)


@register_predictor("convgru")
class ConvGRU(EncoderForecaster):
    """ConvGRU encoder-forecaster (Shi et al. 2017, HKO-7): three ConvGRU blocks at falling resolutions."""

    Config = ConvGRUConfig
    presets = {
        "mmnist": hko7_mmnist_preset(h2h_kernel=(5, 5, 5), h2h_dilation=(1, 1, 1)),
        # CPU-sized: 4x4 patches (blocks at 16, 8, 4), narrow blocks; learns the embedded set's motion in minutes.
        "moving-digits": dict(patch_size=4, num_filters=(16, 32, 32), first_conv=(16, 3, 1, 1),
                              last_deconv=(16, 3, 1, 1), h2h_kernel=(3, 3, 3), batch_size=8, lr=2e-3,
                              lr_schedule="cosine", max_iterations=1000, quick_iterations=200,
                              val_every=200, grad_clip=1.0),
    }
    # The contract's size (vpbench.contract: `bench check`, tests/test_contract.py): seconds on one CPU core.
    presets["tiny"] = tiny_preset(presets["moving-digits"], **TINY_CODEC)

    def per_block_fields(self, blocks: int) -> dict[str, int]:
        return {"h2h_kernel": blocks, "h2h_dilation": blocks}

    def make_cell(self, in_channels: int | None, level: int) -> GRUCell:
        cfg = self.config
        return ConvGRUCell(in_channels, cfg.num_filters[level], cfg.i2h_kernel[level], cfg.h2h_kernel[level],
                           cfg.h2h_dilation[level])
