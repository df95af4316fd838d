"""Readers of other projects' checkpoint files: each returns our init arguments + a state dict.

They sit below the networks: a model class names its reader, and the readers know no model class
(so loading never imports back into the code that asked for it).
"""
