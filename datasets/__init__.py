"""Built-in datasets, one module each. Third parties register through the entry point group
`vpbench.datasets` or `bench --plugin FILE`."""

BUILTIN_MODULES = ("moving_digits", "moving_shapes")
