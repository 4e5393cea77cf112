"""pointformer: LiDAR 3D perception with efficient sparse window transformers."""

__version__ = "0.1.0"
