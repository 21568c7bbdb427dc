"""Run it: the pfrun command, process launch, model loading, one runtime module per parallel strategy."""
