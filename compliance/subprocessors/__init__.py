"""The subprocessor register (P16): who processes personal data for Konsil, per region,
with purpose, data, location, transfer mechanism and agreements, as data (``register.toml``)."""
