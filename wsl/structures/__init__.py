"""Box geometry, and the proposal, detection and ground-truth records every package shares."""
