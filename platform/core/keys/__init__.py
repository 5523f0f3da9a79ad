"""Per-tenant keys: each organisation's own key in its region's Vault (or the local
keyring of the embedded default), data keys wrapped by it, field encryption and
blind indexes, rotation and crypto-shredding."""
