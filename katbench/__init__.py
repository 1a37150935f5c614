"""katbench: benchmarks of Kolmogorov-Arnold layers (GR-KAN, B-spline KAN) against MLPs.

Importing the package imports nothing heavy: each module pays for what it needs (timm and
torchvision only for vision). ``import katbench.models.vit`` registers the ViT/KAT models with
timm, so that ``timm.create_model("kat_tiny_patch16_224")`` works after it.
"""
