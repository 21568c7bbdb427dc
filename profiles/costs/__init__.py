"""Cost models behind one small interface (analytic roofline, measured profile) and the profile format."""
