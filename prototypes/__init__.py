"""Prototype-based image classifiers: ProtoPNet (model, losses, training phases, push) and
prototype localization.

A faithful reimplementation of ProtoPNet (Chen et al., "This Looks Like That", NeurIPS 2019;
reference code cfchen-duke/ProtoPNet) as composable, device-agnostic functions. It knows
nothing about files, configs or command lines.
"""

from prototypes.backbones import BACKBONES, build_backbone
from prototypes.localization import (
    LOCALIZATION_METHODS,
    Localization,
    check_localization_options,
    high_activation_box,
    localize,
)
from prototypes.losses import LossCoefficients, protopnet_loss
from prototypes.model import ProtoPNet, ProtoPNetOutput
from prototypes.push import ProjectionRecord, push
from prototypes.receptive_field import ReceptiveField, receptive_field_box
from prototypes.training import (
    LearningRates,
    NonFiniteLossError,
    PhaseOptimizer,
    Stage,
    build_optimizer,
    plan_schedule,
    run_epoch,
    set_phase,
)
from prototypes.xprotonet import XProtoNet, XProtoNetOutput
from prototypes.xprotonet_losses import XProtoNetLossCoefficients, xprotonet_loss
from prototypes.xprotonet_push import push_xprotonet

__all__ = [
    "BACKBONES",
    "LOCALIZATION_METHODS",
    "LearningRates",
    "Localization",
    "LossCoefficients",
    "NonFiniteLossError",
    "PhaseOptimizer",
    "ProjectionRecord",
    "ProtoPNet",
    "ProtoPNetOutput",
    "ReceptiveField",
    "Stage",
    "XProtoNet",
    "XProtoNetLossCoefficients",
    "XProtoNetOutput",
    "build_backbone",
    "build_optimizer",
    "check_localization_options",
    "high_activation_box",
    "localize",
    "plan_schedule",
    "protopnet_loss",
    "push",
    "push_xprotonet",
    "receptive_field_box",
    "run_epoch",
    "set_phase",
    "xprotonet_loss",
]
