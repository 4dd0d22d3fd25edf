"""Box geometry and the detection and ground-truth records every package shares."""
