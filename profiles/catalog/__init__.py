"""Catalogs: model presets and their architectures, GPU data sheets, measured and published runs."""
