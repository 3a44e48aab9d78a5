"""Models built on residual stacks."""
