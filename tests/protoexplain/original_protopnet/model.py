"""Stand-in for the original's ``model`` module: ``PPNet`` (see README.md)."""

import torch
import torch.nn.functional as F
from torch import nn


def receptive_field_info(img_size, kernels, strides, paddings):
    """[latent size, jump, field size, start] after the trunk's layers, pixel i covering
    [i, i + 1)."""
    size, jump, field, start = img_size, 1, 1, 0.5
    for kernel, stride, padding in zip(kernels, strides, paddings, strict=True):
        size = (size - kernel + 2 * padding) // stride + 1
        field = field + (kernel - 1) * jump
        start = start + ((kernel - 1) / 2 - padding) * jump
        jump = jump * stride
    return [size, jump, field, start]


class PPNet(nn.Module):
    def __init__(self, features, img_size, prototype_shape, proto_layer_rf_info, num_classes,
                 prototype_activation_function="log", add_on_layers_type="bottleneck"):
        super().__init__()
        self.img_size = img_size
        self.prototype_shape = prototype_shape
        self.num_prototypes = prototype_shape[0]
        self.num_classes = num_classes
        self.epsilon = 1e-4
        self.prototype_activation_function = prototype_activation_function
        per_class = self.num_prototypes // num_classes
        self.prototype_class_identity = torch.zeros(self.num_prototypes, num_classes)
        for j in range(self.num_prototypes):
            self.prototype_class_identity[j, j // per_class] = 1
        self.proto_layer_rf_info = proto_layer_rf_info
        self.features = features
        name = str(features).upper()
        kind = nn.BatchNorm2d if name.startswith("DENSE") else nn.Conv2d
        last = [m for m in features.modules() if isinstance(m, kind)][-1]
        channels = last.num_features if kind is nn.BatchNorm2d else last.out_channels
        dim = prototype_shape[1]
        if add_on_layers_type == "bottleneck":
            layers = []
            while channels > dim or not layers:
                out = max(dim, channels // 2)
                layers += [nn.Conv2d(channels, out, 1), nn.ReLU(), nn.Conv2d(out, out, 1),
                           nn.ReLU() if out > dim else nn.Sigmoid()]
                channels //= 2
            self.add_on_layers = nn.Sequential(*layers)
        else:
            self.add_on_layers = nn.Sequential(nn.Conv2d(channels, dim, 1), nn.ReLU(),
                                               nn.Conv2d(dim, dim, 1), nn.Sigmoid())
        self.prototype_vectors = nn.Parameter(torch.rand(prototype_shape))
        self.ones = nn.Parameter(torch.ones(prototype_shape), requires_grad=False)
        self.last_layer = nn.Linear(self.num_prototypes, num_classes, bias=False)

    def conv_features(self, x):
        return self.add_on_layers(self.features(x))

    def _l2_convolution(self, x):
        patch = F.conv2d(x ** 2, self.ones)
        proto = (self.prototype_vectors ** 2).sum(dim=(1, 2, 3)).view(-1, 1, 1)
        return F.relu(patch - 2 * F.conv2d(x, self.prototype_vectors) + proto)

    def prototype_distances(self, x):
        return self._l2_convolution(self.conv_features(x))

    def distance_2_similarity(self, distances):
        if self.prototype_activation_function == "log":
            return torch.log((distances + 1) / (distances + self.epsilon))
        return -distances

    def forward(self, x):
        distances = self.prototype_distances(x)
        min_distances = distances.flatten(2).min(dim=2).values
        return self.last_layer(self.distance_2_similarity(min_distances)), min_distances


def construct_PPNet(features, img_size, prototype_shape, num_classes,  # noqa: N802
                    prototype_activation_function="log", add_on_layers_type="bottleneck"):
    rf_info = receptive_field_info(img_size, *features.conv_info())
    return PPNet(features, img_size, prototype_shape, rf_info, num_classes,
                 prototype_activation_function, add_on_layers_type)
