"""LightningModules: how each model is trained, validated and tested."""
