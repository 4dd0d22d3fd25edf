"""What every command needs around its work: atomic file writes, the user-error base
(:class:`~wsl.runtime.errors.WSLError`), the run directory check, the stored-config checks,
instantiating config groups, a quiet console, and how a failed run ends. The lowest layer: it
imports nothing else of wsl."""
