"""Topologies: the file format, its networkx graph with route classes, and `nvidia-smi topo -m` import."""
