"""Models built from the mixer registry (small nets, ViT/KAT, TabTransformer, graph)."""
