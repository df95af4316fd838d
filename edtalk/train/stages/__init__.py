"""Registered training stages (one module per stage; see `edtalk.train.stage`)."""
