"""Data: readers, the synthetic LiDAR simulator, transforms, datasets."""
