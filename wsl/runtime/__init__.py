"""What every command needs around its work: atomic file writes, the run directory check,
instantiating config groups, a quiet console, and how a failed run ends."""
