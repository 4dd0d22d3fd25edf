"""wsl: weakly supervised object localization and detection on VOC-format data."""

__version__ = "0.1.0"
