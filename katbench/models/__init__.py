"""Models built from the mixer registry (small nets, ViT/KAT, TabTransformer, graph).

``import katbench.models.vit`` registers the ViT/KAT models with timm (``kat_*``,
``vit_*_kan``); the other models do not import timm.
"""
