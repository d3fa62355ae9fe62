"""Shapes and Opacus compatibility of the three-stage generator, for every modality mix."""

from __future__ import annotations

import pytest
import torch
from opacus.validators import ModuleValidator

from fedsynth.config import ModelConfig
from fedsynth.data.records import ColumnSpec, Schema
from fedsynth.models import build_generator, phase_networks

COLUMNS = (
    ColumnSpec("age", "numeric", 18, 90),
    ColumnSpec("sex", "categorical", categories=("F", "M")),
    ColumnSpec("stage", "categorical", categories=("I", "II", "III")),
)


def schema(image: tuple[int, int, int] | None, table: bool) -> Schema:
    return Schema(columns=COLUMNS if table else (), class_names=("a", "b", "c"), image_shape=image)


@pytest.mark.parametrize(
    "image,table",
    [((1, 32, 32), True), ((1, 28, 28), False), ((3, 24, 40), True), (None, True)],
)
def test_generator_shapes(image: tuple[int, int, int] | None, table: bool) -> None:
    s = schema(image, table)
    model = build_generator(s, ModelConfig(), seed=0)
    b = 5
    images = torch.rand(b, *image) if image else None
    clinical = None
    if table:
        clinical = torch.stack(
            [torch.rand(b) * 72 + 18, torch.randint(0, 2, (b,)).float(), torch.randint(0, 3, (b,)).float()], 1
        )
    latent = model.autoencoder.encode(images, clinical)
    assert latent.shape == (b, model.autoencoder.latent_dim)
    noise = torch.randn(b, model.autoencoder.latent_dim)
    assert model.autoencoder(images, clinical, torch.tensor([0, 1, 2, 0, 1]), noise).shape == (b,)
    out_images, out_rows = model.sample(torch.tensor([0, 1, 2, 0, 1]))
    if image:
        assert out_images is not None and out_images.shape == (b, *image)
        assert 0 <= out_images.min() and out_images.max() <= 1
    else:
        assert out_images is None
    if table:
        assert out_rows is not None and out_rows.shape == (b, 3)
        assert ((out_rows[:, 0] >= 18) & (out_rows[:, 0] <= 90)).all()
        assert set(out_rows[:, 2].tolist()) <= {0.0, 1.0, 2.0}
    score, logits = model.discriminator(latent, torch.tensor([0, 1, 2, 0, 1]))
    assert score.shape == (b,) and logits.shape == (b, 3)


def test_networks_are_opacus_compatible() -> None:
    model = build_generator(schema((1, 32, 32), True), ModelConfig(), seed=0)
    for net in (model.autoencoder, model.discriminator):
        assert ModuleValidator.validate(net, strict=False) == []
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


def test_seeded_build_is_identical_and_weights_round_trip() -> None:
    s = schema((1, 32, 32), True)
    a, b = build_generator(s, ModelConfig(), seed=3), build_generator(s, ModelConfig(), seed=3)
    wa = a.weights()
    assert all((wa[k] == v).all() for k, v in b.weights().items())
    c = build_generator(s, ModelConfig(), seed=4)
    assert any((wa[k] != v).any() for k, v in c.weights().items())
    c.load_weights(wa)
    assert all((wa[k] == v).all() for k, v in c.weights().items())
    bad = dict(wa)
    bad.pop(next(iter(bad)))
    with pytest.raises(ValueError, match="missing"):
        c.load_weights(bad)


def test_phase_networks() -> None:
    assert phase_networks("autoencoder") == ("autoencoder",)
    assert phase_networks("gan") == ("generator", "discriminator")
    with pytest.raises(ValueError):
        phase_networks("attack")
