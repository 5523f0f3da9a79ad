"""The ``konsil`` command: the top layer. Each command loads only the code of the
process it starts (main.py); the operator commands for data-subject requests,
retention, the access log and media nodes live beside it."""
