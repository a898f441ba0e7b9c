"""Audio: reading files, and the paper's Fig. 2 (augmentation and log-mel features), batched on any device."""
from .io import INT16_SCALE, AudioError, read_audio, to_float
from .pipeline import Pipeline
from .transforms import FreqTimeMask, LogMel, PadCrop, RandomScale, SilenceTrim, ToChannels

__all__ = ["Pipeline", "SilenceTrim", "RandomScale", "PadCrop", "LogMel", "FreqTimeMask", "ToChannels",
           "read_audio", "to_float", "INT16_SCALE", "AudioError"]
