"""fedsynth: federated, differentially private synthesis of multimodal medical data."""

__version__ = "0.1.0"
