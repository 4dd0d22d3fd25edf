"""Evaluation: metrics and localization read off model outputs."""
