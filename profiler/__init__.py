"""Measures models and links with torch: per-layer compute, collectives, overlap, the runtime's own
per-step and VAE costs. It stands above the runtime, whose loop it times; profiles/ stays torch-free."""
