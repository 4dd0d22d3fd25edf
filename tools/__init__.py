"""Development tools, run from a checkout by the Makefile (``python -m tools.<name>``).

Not part of the installed ``wsl`` package, and never imported by it (a contract in
``pyproject.toml``): they set up a developer's machine, e.g. ``make visdom``'s web-UI files.
"""
