"""Stand-in for the original's VGG trunk module (see README.md)."""

from torch import nn


class VGG_features(nn.Module):  # noqa: N801 - the original's class name
    def __init__(self, cfg, batch_norm=False):
        super().__init__()
        self.batch_norm = batch_norm
        self.kernel_sizes, self.strides, self.paddings = [], [], []
        self.n_layers = 0
        modules, channels = [], 3
        for item in cfg:
            if item == "M":
                modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
                self.kernel_sizes.append(2)
                self.strides.append(2)
                self.paddings.append(0)
                continue
            modules.append(nn.Conv2d(channels, item, kernel_size=3, padding=1))
            if batch_norm:
                modules.append(nn.BatchNorm2d(item))
            modules.append(nn.ReLU(inplace=True))
            self.kernel_sizes.append(3)
            self.strides.append(1)
            self.paddings.append(1)
            self.n_layers += 1
            channels = item
        self.features = nn.Sequential(*modules)

    def forward(self, x):
        return self.features(x)

    def conv_info(self):
        return self.kernel_sizes, self.strides, self.paddings

    def __repr__(self):
        return f"VGG{self.n_layers + 3}, batch_norm={self.batch_norm}"
