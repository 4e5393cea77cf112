"""Tensor algorithms: voxelizers, window grouping, box ops. One public function per idea."""
