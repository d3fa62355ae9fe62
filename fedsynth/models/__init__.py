"""The conditional multimodal generator: per-modality autoencoders and a latent conditional GAN."""

from fedsynth.models.autoencoder import MultimodalAutoencoder
from fedsynth.models.generator import NETWORKS, MultimodalGenerator, build_generator, phase_networks
from fedsynth.models.latent_gan import LatentDiscriminator, LatentGenerator

__all__ = [
    "NETWORKS",
    "build_generator",
    "phase_networks",
    "LatentDiscriminator",
    "LatentGenerator",
    "MultimodalAutoencoder",
    "MultimodalGenerator",
]
