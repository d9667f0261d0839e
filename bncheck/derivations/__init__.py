"""Built-in hand derivations, one module per (model, form), each formula stated in its docstring.

They are written in plain NumPy, as a user's derivation file may be, and are checked by the same
machinery as a user's file.
"""
