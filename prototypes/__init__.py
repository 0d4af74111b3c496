"""Prototype-based image classifiers: ProtoPNet (model, losses, training phases, push) and
prototype localization.

A faithful reimplementation of ProtoPNet (Chen et al., "This Looks Like That", NeurIPS 2019;
reference code cfchen-duke/ProtoPNet) as composable, device-agnostic functions. It knows
nothing about files, configs or command lines.
"""

from prototypes.backbones import BACKBONES, build_backbone
from prototypes.duplicates import duplicate_prototypes, merge_duplicates
from prototypes.localization import (
    LOCALIZATION_METHODS,
    Localization,
    check_localization_options,
    high_activation_box,
    localize,
)
from prototypes.losses import LossCoefficients, protopnet_loss
from prototypes.model import ProtoPNet, ProtoPNetOutput
from prototypes.nearest_patches import NearestPatches, nearest_patches
from prototypes.prototype_score import PrototypeScore, PrototypeSimilarities
from prototypes.pruning import (
    PruningDecision,
    pruning_decisions,
    resize_prototypes,
    select_prototypes,
)
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
    "NearestPatches",
    "LossCoefficients",
    "NonFiniteLossError",
    "PhaseOptimizer",
    "ProjectionRecord",
    "ProtoPNet",
    "ProtoPNetOutput",
    "PrototypeScore",
    "PrototypeSimilarities",
    "PruningDecision",
    "ReceptiveField",
    "Stage",
    "XProtoNet",
    "XProtoNetLossCoefficients",
    "XProtoNetOutput",
    "build_backbone",
    "build_optimizer",
    "check_localization_options",
    "duplicate_prototypes",
    "high_activation_box",
    "localize",
    "merge_duplicates",
    "nearest_patches",
    "plan_schedule",
    "protopnet_loss",
    "pruning_decisions",
    "push",
    "push_xprotonet",
    "receptive_field_box",
    "resize_prototypes",
    "run_epoch",
    "select_prototypes",
    "set_phase",
    "xprotonet_loss",
]
