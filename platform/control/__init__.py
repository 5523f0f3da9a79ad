"""The control plane: organisation directory, signup, login discovery, gateway."""
