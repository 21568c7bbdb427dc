"""Run it: the pfrun command, process launch, model loading, PipeFusion and other executors."""
