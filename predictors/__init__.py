"""Built-in predictors, one module each. Third parties register through the entry point group
`vpbench.predictors` or `bench --plugin FILE`."""

BUILTIN_MODULES = ("copy_last", "mean_frame", "blank", "convlstm", "predrnn", "predrnn_v2", "predrnn_pp", "mim", "stip", "convgru", "trajgru", "e3d_lstm", "simvp", "tau", "motionrnn", "strpm", "cwvae", "htsrm", "mau", "phydnet", "mmvp", "dmvfn", "prednet", "swinlstm", "crevnet", "sv2p", "savp", "retro_cyclegan", "beyond_mse", "hfvp", "wast")
