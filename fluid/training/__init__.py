"""Training and evaluation: the network (encoders + head), the Lightning module, metrics and reports."""
