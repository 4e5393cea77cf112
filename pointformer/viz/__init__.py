"""Views of point clouds, boxes and labels: headless BEV images now, open3d views on demand."""
