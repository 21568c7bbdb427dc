"""Which plan should we run: search space, placement, ranking, capacity, reports, the pfplan CLI."""
