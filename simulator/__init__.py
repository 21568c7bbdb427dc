"""What would happen if we ran plan X: the plan format, network and cost models, strategies, engine."""
