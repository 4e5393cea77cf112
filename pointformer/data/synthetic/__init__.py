"""Synthetic LiDAR: scenes, a ray-casting spinning-LiDAR simulator, and writers of real formats."""
