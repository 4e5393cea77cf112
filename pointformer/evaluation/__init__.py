"""Metrics of the benchmarks: nuScenes detection (the devkit's numbers, faster), Waymo-style
mAP/mAPH, KITTI AP, and segmentation mIoU."""
