"""Datasets: their layouts (ESC-50, ESC-10, UrbanSound8K and the embedded synthetic set), downloading,
and decoding once into a :class:`WaveBank` cached on disk."""
from .bank import Split, WaveBank, load_bank
from .fetch import download
from .layouts import SOURCES, DatasetError, dataset_folder, layout
from .verify import DownloadError, verify_contents

__all__ = ["load_bank", "WaveBank", "Split", "DatasetError", "dataset_folder", "layout", "SOURCES", "download",
           "DownloadError", "verify_contents"]
