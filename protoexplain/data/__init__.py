"""Data sets (items are dicts following the contract in DESIGN.md) and their helpers.

:data:`DATASETS` maps the names a config's ``data.dataset`` takes to the data set classes.
"""

from protoexplain.data.chestxray14 import ChestXray14
from protoexplain.data.collate import collate
from protoexplain.data.contact_sheet import write_contact_sheet
from protoexplain.data.cub200 import CUB200
from protoexplain.data.fashion_composites import FashionComposites
from protoexplain.data.image_folder import ImageFolder
from protoexplain.data.image_io import ImageReadError, read_image
from protoexplain.data.synthetic_parts import SyntheticParts
from protoexplain.data.synthetic_radiographs import SyntheticRadiographs

DATASETS: dict[str, type] = {
    "SyntheticParts": SyntheticParts,
    "SyntheticRadiographs": SyntheticRadiographs,
    "FashionComposites": FashionComposites,
    "CUB200": CUB200,
    "ChestXray14": ChestXray14,
    "ImageFolder": ImageFolder,
}
"""Data set name (``data.dataset`` in a config) -> class; each class takes ``root`` and
``split`` and yields items as the data set contract in DESIGN.md."""

__all__ = [
    "CUB200",
    "DATASETS",
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
