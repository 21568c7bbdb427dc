"""What is true about the hardware and the models: catalogs, topologies, profiles, costs."""
