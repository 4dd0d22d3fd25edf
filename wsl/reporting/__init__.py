"""Reports that show what a run made, readable without TensorBoard or Python."""
