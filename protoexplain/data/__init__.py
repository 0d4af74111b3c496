"""Data sets (items are dicts following the contract in DESIGN.md) and their helpers."""

from protoexplain.data.chestxray14 import ChestXray14
from protoexplain.data.collate import collate
from protoexplain.data.contact_sheet import write_contact_sheet
from protoexplain.data.cub200 import CUB200
from protoexplain.data.fashion_composites import FashionComposites
from protoexplain.data.image_folder import ImageFolder
from protoexplain.data.image_io import ImageReadError, read_image
from protoexplain.data.synthetic_parts import SyntheticParts
from protoexplain.data.synthetic_radiographs import SyntheticRadiographs

__all__ = [
    "CUB200",
    "ChestXray14",
    "FashionComposites",
    "ImageFolder",
    "ImageReadError",
    "SyntheticParts",
    "SyntheticRadiographs",
    "collate",
    "read_image",
    "write_contact_sheet",
]
