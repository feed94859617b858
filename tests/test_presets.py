"""Presets that cite a reference config equal it: each value below is typed from the cited file (OpenSTL c74deb5's
configs/, CrevNet's OpenSTL 0a0f36c's, the last version with CrevNet; its fork duyhlzu/GMG's, thuml/MotionRNN's script, HKO-7's and CW-VAE's configs, STIPHR's and STRPM's
configs/<dataset>_configs.py, MAU's configs/mnist_train_configs.py; DMVFN's from OpenSTL's branch OpenSTLv0.3.0; SwinLSTM's
configs.py), not from vpbench, and the resolved preset must hold it. Training lengths converted
from epochs (the OpenSTL mmnist and CW-VAE presets) depend on clip counts and are left out here.

OpenSTL's configs give num_hidden as '128,128,128,128' (num_layers 4 x num_hidden 128), its scheduled sampling as
sampling_changing_rate 0.00002 (= 1 / sampling_stop_iter 50000), `sched` ('onecycle' / 'cosine') and PhyDNet's
encoder stride as patch_size (downsample); the STIP, STRPM and MAU authors' as sampling_changing_rate = 1 /
sampling_stop_iter, lr_decay 0.90 every delay_interval 2000 (lr_gamma, lr_step_every), lr_d (d_lr) and D_num_hidden
(d_hidden). MAU's configs give filter_size 5 (OpenSTL) or (5, 5) (the authors'), and num_hidden '64,64,64,64'
(OpenSTL) or num_layers 4 x num_hidden 64 (the authors'). A batch_size is the file's, per GPU where its comment runs
it on several (e3d-lstm kth: "bs = 8 x 2GPUs"; mim and e3d-lstm human: "4 x bs4 = bs16"; simvp kth: "2 x 8GPUs").
PredNet's (OpenSTL v0.3.0's configs) give stack_sizes as (1, 32, 64, 128, 256) or (3, ...): the frames' channels
first, which vpbench's stack_sizes leaves out; A_filt_sizes, Ahat_filt_sizes and R_filt_sizes all 3 (filter_size).
"""
from __future__ import annotations

import pytest

from vpbench.predictor import resolve_config

RNN = dict(num_layers=4, num_hidden=128, filter_size=5, sampling_stop_iter=50_000)
MMNIST_RNN = dict(RNN, patch_size=4, batch_size=16, lr_schedule="onecycle")
KTH_RNN = dict(RNN, patch_size=2, batch_size=16, lr=1e-3, lr_schedule="onecycle")
HUMAN_RNN = dict(RNN, patch_size=4, batch_size=16, lr=1e-4, lr_schedule="cosine")
V2 = dict(reverse_scheduled_sampling=True, r_sampling_step_1=25_000, r_sampling_step_2=50_000, r_exp_alpha=5_000)
STIP = dict(num_layers=16, filter_size=5, batch_size=1, lr_gamma=0.9, lr_step_every=2000, d_hidden=64)
STIP_MODEL = dict(STIP, num_hidden=64, sr_size=16, alpha=0.1, lr=5e-3, d_lr=5e-4)
STRPM_MODEL = dict(STIP, num_hidden=128, patch_size=8, tau=5, lr=5e-4, d_lr=5e-5)
PREDNET = dict(stack_sizes=(32, 64, 128, 256), filter_size=3, weight_mode="L_0", error_activation="relu",
               A_activation="relu", batch_size=16)
MAU = dict(num_layers=4, num_hidden=64, filter_size=5, patch_size=1, tau=5, cell_mode="normal", model_mode="normal",
           batch_size=16, sampling_stop_iter=50_000)


SV2P = dict(num_masks=10, dna_kernel_size=5, relu_shift=1e-12, latent_channels=1, latent_std_min=-5.0,
            num_iterations_1st_stage=15_000, num_iterations_2nd_stage=15_000, latent_loss_multiplier=1e-3,
            latent_loss_multiplier_schedule="constant", anneal_end=50_000, scheduled_sampling_k=900, lr=1e-3,
            adam_beta1=0.85, adam_eps=1e-6, grad_clip=1.0)


def schedule(max_iterations: int, sampling_stop_iter: int) -> dict:
    return dict(max_iterations=max_iterations, sampling_stop_iter=sampling_stop_iter)


HKO7 = dict(num_filters=(64, 96, 96), first_conv=(16, 3, 1, 1), last_deconv=(16, 3, 1, 1), i2h_kernel=(3, 3, 3),
            batch_size=4, lr=1e-4, adam_beta1=0.5, grad_clip=1.0, max_iterations=200_000, lr_gamma=0.7,
            lr_step_every=20_000, val_every=5_000)
CWVAE = dict(levels=3, tmp_abs_factor=6, enc_dense_embed_size=1000, cell_stoch_size=20, cell_deter_size=200,
             cell_embed_size=200, batch_size=50, train_length=100)
# OpenSTLv0.3.0's DMVFN configs (the model part is the same in all three; coef, the perceptual loss, is left out).
DMVFN = dict(routing_out_channels=32, num_block=9, num_features=(160, 160, 160, 80, 80, 80, 44, 44, 44),
             scale=(4, 4, 4, 2, 2, 2, 1, 1, 1), beta=0.5, gamma=0.8)

# (predictor, preset, the file's values, the file)
CITED = [
    ("convlstm", "mmnist", dict(MMNIST_RNN, lr=5e-4), "OpenSTL configs/mmnist/ConvLSTM.py"),
    ("convlstm", "kth-10to20", KTH_RNN, "OpenSTL configs/kth/ConvLSTM.py"),
    ("convlstm", "human36m-openstl", HUMAN_RNN, "OpenSTL configs/human/ConvLSTM.py"),
    ("predrnn", "mmnist", dict(MMNIST_RNN, lr=5e-4), "OpenSTL configs/mmnist/PredRNN.py"),
    ("predrnn", "kth-10to20", KTH_RNN, "OpenSTL configs/kth/PredRNN.py"),
    ("predrnn", "human36m-openstl", HUMAN_RNN, "OpenSTL configs/human/PredRNN.py"),
    ("predrnn-pp", "mmnist", dict(MMNIST_RNN, lr=1e-4), "OpenSTL configs/mmnist/PredRNNpp.py"),
    ("predrnn-pp", "kth-10to20", KTH_RNN, "OpenSTL configs/kth/PredRNNpp.py"),
    ("predrnn-pp", "human36m-openstl", HUMAN_RNN, "OpenSTL configs/human/PredRNNpp.py"),
    ("predrnn-v2", "mmnist", dict(MMNIST_RNN, **V2, lr=5e-4, decouple_beta=0.1), "OpenSTL configs/mmnist/PredRNNv2.py"),
    ("predrnn-v2", "kth-10to20", dict(KTH_RNN, **V2, decouple_beta=0.01), "OpenSTL configs/kth/PredRNNv2.py"),
    ("predrnn-v2", "human36m-openstl", dict(HUMAN_RNN, **V2, decouple_beta=0.1), "OpenSTL configs/human/PredRNNv2.py"),
    ("mim", "mmnist", dict(MMNIST_RNN, lr=5e-4), "OpenSTL configs/mmnist/MIM.py"),
    ("mim", "kth-10to20", dict(KTH_RNN, patch_size=4, lr=1e-4), "OpenSTL configs/kth/MIM.py"),
    ("mim", "human36m-openstl", dict(HUMAN_RNN, batch_size=4), "OpenSTL configs/human/MIM.py"),
    ("e3d-lstm", "mmnist", dict(MMNIST_RNN, lr=1e-4, stride=1), "OpenSTL configs/mmnist/E3DLSTM.py"),
    ("e3d-lstm", "kth-10to20", dict(KTH_RNN, patch_size=8, stride=2, lr=5e-4, batch_size=8),
     "OpenSTL configs/kth/E3DLSTM.py"),
    ("e3d-lstm", "human36m-openstl", dict(HUMAN_RNN, patch_size=8, batch_size=4), "OpenSTL configs/human/E3DLSTM.py"),
    ("simvp", "mmnist", dict(translator="incepu", hid_S=64, hid_T=512, N_T=8, N_S=4, spatio_kernel_enc=3,
                             spatio_kernel_dec=3, lr=1e-3, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/mmnist/simvp/SimVP_IncepU.py"),
    ("simvp", "kth-10to20", dict(translator="incepu", hid_S=64, hid_T=256, N_T=4, N_S=2, lr=1e-3, batch_size=8,
                                 lr_schedule="onecycle"), "OpenSTL configs/kth/simvp/SimVP_IncepU.py"),
    ("simvp", "human36m-openstl", dict(translator="incepu", hid_S=64, hid_T=512, N_T=6, N_S=4, lr=1e-3, batch_size=16,
                                       lr_schedule="cosine"), "OpenSTL configs/human/simvp/SimVP_IncepU.py"),
    ("tau", "mmnist", dict(hid_S=64, hid_T=512, N_T=8, N_S=4, alpha=0.1, lr=1e-3, batch_size=16, drop_path=0.0,
                           lr_schedule="onecycle"), "OpenSTL configs/mmnist/TAU.py"),
    ("tau", "kth-10to20", dict(hid_S=64, hid_T=256, N_T=6, N_S=2, alpha=0.1, lr=1e-3, batch_size=4, drop_path=0.1,
                               lr_schedule="onecycle"), "OpenSTL configs/kth/TAU.py"),
    ("tau", "human36m-openstl", dict(hid_S=64, hid_T=512, N_T=8, N_S=4, alpha=0.1, lr=1e-3, batch_size=16,
                                     drop_path=0.1, lr_schedule="onecycle"), "OpenSTL configs/human/TAU.py"),
    *[("simvp", f"mmnist-{translator}", dict(translator=translator, hid_S=64, hid_T=512, N_T=8, N_S=4, lr=lr,
                                             batch_size=16, drop_path=0.0, lr_schedule="onecycle"),
       f"OpenSTL configs/mmnist/simvp/SimVP_{name}.py")
      for translator, name, lr in [("gsta", "gSTA", 1e-3), ("convmixer", "ConvMixer", 1e-2),
                                   ("convnext", "ConvNeXt", 1e-2), ("hornet", "HorNet", 1e-3),
                                   ("mlpmixer", "MLPMixer", 1e-3), ("moganet", "MogaNet", 1e-3),
                                   ("poolformer", "Poolformer", 1e-3), ("swin", "Swin", 1e-3),
                                   ("uniformer", "Uniformer", 5e-4), ("van", "VAN", 1e-3), ("vit", "ViT", 5e-4)]],
    ("phydnet", "mmnist", dict(downsample=4, lr=1e-3, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/mmnist/PhyDNet.py"),
    ("phydnet", "kth-10to20", dict(downsample=4, lr=1e-3, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/kth/PhyDNet.py"),
    ("phydnet", "human36m-openstl", dict(downsample=4, lr=1e-4, batch_size=16, lr_schedule="cosine"),
     "OpenSTL configs/human/PhyDNet.py"),
    ("motionrnn", "mmnist", dict(MMNIST_RNN, lr=3e-4), "duyhlzu/GMG configs/mmnist/MotionRNN.py"),
    ("motionrnn", "human36m-128", dict(RNN, num_hidden=64, patch_size=4, lr=3e-4, batch_size=8, max_iterations=80_000),
     "thuml/MotionRNN human_script/MotionRNN_PredRNN_human_train.sh"),
    ("mau", "mmnist", dict(MAU, sr_size=4, lr=1e-3, lr_schedule="onecycle"), "OpenSTL configs/mmnist/MAU.py"),
    ("mau", "kth-10to20", dict(MAU, sr_size=2, lr=5e-4, lr_schedule="onecycle"), "OpenSTL configs/kth/MAU.py"),
    ("mau", "human36m-openstl", dict(MAU, sr_size=4, lr=1e-4, lr_schedule="cosine"), "OpenSTL configs/human/MAU.py"),
    ("mau", "mmnist-authors", dict(MAU, sr_size=4, lr=1e-3, lr_gamma=0.9, lr_step_every=2000, max_iterations=80_000),
     "MAU configs/mnist_train_configs.py"),
    ("mmvp", "mmnist", dict(hid_S=32, hid_T=192, rrdb_encoder_num=2, rrdb_decoder_num=2, rrdb_enhance_num=2,
                            downsample_setting=(2, 2, 2), lr=1e-3, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/mmnist/MMVP.py"),
    ("mmvp", "kth-10to20", dict(hid_S=16, hid_T=96, rrdb_encoder_num=2, rrdb_decoder_num=2, rrdb_enhance_num=2,
                                downsample_setting=(2, 2, 2), lr=1e-3, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/kth/MMVP.py"),
    # SwinLSTM: OpenSTL's depths_downsample / depths_upsample / num_heads '2,6' / '6,2' / '4,8' (SwinLSTM-D), depths 12
    # and num_heads 4 (SwinLSTM-B); the authors' configs.py: --depths [12], --heads_number [4, 8] (B reads the first).
    ("swinlstm", "mmnist", dict(variant="d", depths_down=(2, 6), depths_up=(6, 2), num_heads=(4, 8), patch_size=2,
                                window_size=4, embed_dim=128, lr=1e-4, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/mmnist/SwinLSTM-D.py"),
    ("swinlstm", "human36m-openstl", dict(variant="b", depth=12, num_heads=(4,), patch_size=2, window_size=4,
                                          embed_dim=128, lr=1e-4, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL configs/human/SwinLSTM-B.py"),
    ("swinlstm", "mmnist-b", dict(variant="b", depth=12, num_heads=(4,), patch_size=2, window_size=4, embed_dim=128,
                                  lr=1e-4, batch_size=16, drop_path=0.1), "SwinLSTM configs.py"),
    ("prednet", "mmnist", dict(PREDNET, lr=1e-4, lr_schedule="onecycle"), "OpenSTL v0.3.0 configs/mmnist/PredNet.py"),
    ("prednet", "kth-10to20", dict(PREDNET, lr=1e-3, lr_schedule="onecycle"),
     "OpenSTL v0.3.0 configs/kth/PredNet.py (its lr commented out: the parser's default)"),
    ("prednet", "human36m-openstl", dict(PREDNET, lr=1e-4, lr_schedule="cosine"),
     "OpenSTL v0.3.0 configs/human/PredNet.py"),
    ("convgru", "mmnist", dict(HKO7, h2h_kernel=(5, 5, 5), h2h_dilation=(1, 1, 1)),
     "HKO-7 experiments/movingmnist/configurations/convgru_1_64_1_96_1_96_K5.yml"),
    ("trajgru", "mmnist", dict(HKO7, links=(13, 13, 13)),
     "HKO-7 experiments/movingmnist/configurations/trajgru_1_64_1_96_1_96_L13.yml"),
    ("cwvae", "mmnist", dict(CWVAE, dec_stddev=1.0, lr=3e-4), "cwvae configs/mmnist.yml"),
    ("cwvae", "mazes", dict(CWVAE, dec_stddev=0.1, lr=3e-4), "cwvae configs/mazes.yml"),
    ("crevnet", "mmnist", dict(predictor_rnn_layers=8, lr=5e-3, batch_size=16, lr_schedule="onecycle", blocks=(4, 5, 3),
                               mult=2),
     "OpenSTL 0a0f36c configs/mmnist/CrevNet.py; openstl/models/crevnet_model.py lines 29-33 (its fixed auto-encoder)"),
    ("stip", "ucf-sports", dict(STIP_MODEL, patch_size=2, **schedule(100_000, 20_000)), "STIPHR configs/ucfsport_configs.py"),
    ("stip", "human36m", dict(STIP_MODEL, patch_size=4, **schedule(100_000, 50_000)), "STIPHR configs/human36m_configs.py"),
    ("stip", "sjtu4k", dict(STIP_MODEL, patch_size=8, **schedule(40_000, 20_000)), "STIPHR configs/sjtu4k_configs.py"),
    ("strpm", "ucf-sports", dict(STRPM_MODEL, sr_size=4, **schedule(100_000, 20_000)), "STRPM configs/ucfsport_configs.py"),
    ("strpm", "human36m", dict(STRPM_MODEL, sr_size=8, **schedule(100_000, 50_000)), "STRPM configs/human36m_configs.py"),
    ("strpm", "sjtu4k", dict(STRPM_MODEL, sr_size=16, **schedule(40_000, 20_000)), "STRPM configs/sjtu4k_configs.py"),
    *[("retro-cyclegan", dataset, dict(width=128, residual_blocks=9, d_width=64, d_layers=3, batch_size=1,
                                       log_size=7, log_sigma=1.0, log_weight=0.005, frame_weight=0.003,
                                       sequence_weight=0.003, lr=3e-4, d_lr=3e-4, adam_beta1=0.5),
       "va26/Retrospective-Cycle-GAN--tensorflow model.py lines 180-202, train.py lines 22, 29-30, 54-56, 106-108")
      for dataset in ("ucf-sports", "human36m", "sjtu4k")],
    # BeyondMSE: dyelax's constants.py (LRATE_D, 0.02 of plain gradient descent, is d_lr 0.002 under the harness's
    # momentum 0.9: not the file's number, so not listed).
    *[("beyond-mse", dataset, dict(history=4, width=128, d_width=64, patch=32, batch_size=8, lr=4e-5, lam_adv=0.05,
                                   lam_lp=1.0, lam_gdl=1.0, l_num=2, gdl_alpha=1.0),
       "dyelax/Adversarial_Video_Generation Code/constants.py (HIST_LEN, TRAIN_HEIGHT, BATCH_SIZE, LRATE_G, LAM_*, "
       "L_NUM, ALPHA_NUM, SCALE_FMS_G / SCALE_CONV_FMS_D as width / d_width multiples)")
      for dataset in ("ucf-sports", "human36m", "sjtu4k")],
    ("dmvfn", "mmnist", dict(DMVFN, lr=1e-4, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL (OpenSTLv0.3.0) configs/mmnist/DMVFN.py"),
    ("dmvfn", "kth-10to20", dict(DMVFN, lr=5e-5, batch_size=16, lr_schedule="onecycle"),
     "OpenSTL (OpenSTLv0.3.0) configs/kth/DMVFN.py"),
    ("dmvfn", "human36m-openstl", dict(DMVFN, lr=1e-3, batch_size=16, lr_schedule="cosine"),
     "OpenSTL (OpenSTLv0.3.0) configs/human/DMVFN.py"),
    # SV2P: tensor2tensor's next_frame_sv2p (sv2p_params.py, basic_stochastic.py's stochastic hparams) at STIP's batch
    # and iterations (STIPHR configs/<dataset>_configs.py): STIP gives no SV2P settings.
    *[("sv2p", dataset, dict(SV2P, batch_size=1, max_iterations=iterations), f"tensor2tensor sv2p_params.py; {source}")
      for dataset, iterations, source in (("ucf-sports", 100_000, "STIPHR configs/ucfsport_configs.py"),
                                          ("human36m", 100_000, "STIPHR configs/human36m_configs.py"),
                                          ("sjtu4k", 40_000, "STIPHR configs/sjtu4k_configs.py"))],
    ("hfvp", "mmnist", dict(K=1.0, M=1.0, rnn_size=512, g_dim=128, z_dim=10, predictor_rnn_layers=2, prior_rnn_layers=1,
                            posterior_rnn_layers=1, beta=1e-4, lr=3e-4, batch_size=100),
     "s-tian/svg-prime 6517c44 svg_prime/train_svg_prime.py lines 13-44"),
    # OpenSTL ships WaST's config for TaxiBJ only; wast's mmnist preset is it.
    ("wast", "mmnist", dict(encoder_dim=20, block_list=(2, 8, 2), mlp_ratio=4.0, loss_weight=0.001, lr=1e-3,
                            batch_size=16, drop_path=0.25, lr_schedule="cosine"), "OpenSTL configs/taxibj/WaST.py"),
]
ROWS = [(predictor, preset, key, value, source) for predictor, preset, values, source in CITED
        for key, value in values.items()]


@pytest.mark.parametrize("predictor,preset,key,value,source", ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in ROWS])
def test_a_preset_holds_the_value_of_the_config_it_cites(predictor, preset, key, value, source):
    assert getattr(resolve_config(predictor, preset=preset).config, key) == value, source
