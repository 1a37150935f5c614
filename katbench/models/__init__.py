"""Models built from the mixer registry (small nets, ViT/KAT, TabTransformer, graph).

Importing this package registers the ViT/KAT models with timm (``katbench.models.vit``).
"""

from katbench.models import vit as vit  # noqa: F401  (registers kat_* / vit_*_kan with timm)
