"""Lightning callbacks that show what a model learned (TensorBoard, visdom, run directory)."""
