"""Experiment loggers that Lightning does not ship (visdom)."""
