"""The exercises' stubs: a statement (the module docstring) and the function to fill in, raising NotImplementedError."""
