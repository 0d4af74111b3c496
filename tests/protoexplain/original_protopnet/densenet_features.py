"""Stand-in for the original's DenseNet trunk module (see README.md)."""

from collections import OrderedDict

import torch
from torch import nn


class _DenseLayer(nn.Sequential):
    def __init__(self, inputs, growth_rate, bn_size):
        super().__init__(OrderedDict([
            ("norm1", nn.BatchNorm2d(inputs)), ("relu1", nn.ReLU(inplace=True)),
            ("conv1", nn.Conv2d(inputs, bn_size * growth_rate, kernel_size=1, bias=False)),
            ("norm2", nn.BatchNorm2d(bn_size * growth_rate)), ("relu2", nn.ReLU(inplace=True)),
            ("conv2", nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, padding=1,
                                bias=False)),
        ]))
        self.drop_rate = 0

    def forward(self, x):
        return torch.cat([x, super().forward(x)], 1)


class _DenseBlock(nn.Sequential):
    def __init__(self, count, inputs, bn_size, growth_rate):
        super().__init__()
        for i in range(count):
            self.add_module(f"denselayer{i + 1}",
                            _DenseLayer(inputs + i * growth_rate, growth_rate, bn_size))


class _Transition(nn.Sequential):
    def __init__(self, inputs, outputs):
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(inputs)), ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(inputs, outputs, kernel_size=1, bias=False)),
            ("pool", nn.AvgPool2d(kernel_size=2, stride=2)),
        ]))


class DenseNet_features(nn.Module):  # noqa: N801 - the original's class name
    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
                 bn_size=4):
        super().__init__()
        self.kernel_sizes, self.strides, self.paddings = [7, 3], [2, 2], [3, 1]
        self.n_layers = 0
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, num_init_features, kernel_size=7, stride=2, padding=3,
                                bias=False)),
            ("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
        ]))
        channels = num_init_features
        for i, count in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}",
                                     _DenseBlock(count, channels, bn_size, growth_rate))
            self.kernel_sizes += [1, 3] * count
            self.strides += [1, 1] * count
            self.paddings += [0, 1] * count
            self.n_layers += 2 * count
            channels += count * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}",
                                         _Transition(channels, channels // 2))
                self.kernel_sizes += [1, 2]
                self.strides += [1, 2]
                self.paddings += [0, 0]
                self.n_layers += 1
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.features.add_module("final_relu", nn.ReLU(inplace=True))

    def forward(self, x):
        return self.features(x)

    def conv_info(self):
        return self.kernel_sizes, self.strides, self.paddings

    def __repr__(self):
        return f"densenet{self.n_layers + 2}_features"
