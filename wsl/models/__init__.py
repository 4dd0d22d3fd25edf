"""Models (plain nn.Modules): torchvision backbones, global pooling, the Localizer."""
