"""Built-in datasets, one module each. Third parties register through the entry point group
`vpbench.datasets` or `bench --plugin FILE`."""

BUILTIN_MODULES = ("moving_digits", "moving_shapes", "kth", "mmnist", "gqn_mazes", "ucf_sports", "human36m", "sjtu4k")
