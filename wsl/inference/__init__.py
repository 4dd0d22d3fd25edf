"""Inference shared by the families: test-time views, region scores and heatmaps to boxes."""
