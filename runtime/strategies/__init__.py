"""Executors: the denoising loop of one rank for a plan (PipeFusion covers serial as N=1, M=1)."""
