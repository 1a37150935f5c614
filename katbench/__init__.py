"""katbench: benchmarks of Kolmogorov-Arnold layers (GR-KAN, B-spline KAN) against MLPs.

Importing the package registers the ViT/KAT models with timm, so that
``timm.create_model("kat_tiny_patch16_224")`` works after ``import katbench``.
"""

from katbench import models as models  # noqa: F401  (registers kat_* / vit_*_kan with timm)
