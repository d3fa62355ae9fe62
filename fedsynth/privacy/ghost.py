"""Exact per-sample clipping without per-sample gradients: ghost norms with book-keeping.

The reference DP-SGD engine (Opacus' hooks) writes every parameter's gradient out once per record
and then clips and sums them. This engine gets the same clipped sum from what one ordinary backward
pass already computes, for the layer types fedsynth's private networks are made of:

- while the network runs through :class:`GhostModule`, its trainable parameters are switched to
  ``requires_grad=False``, so autograd computes only the gradients flowing *between* layers (not
  the summed weight gradients, which DP-SGD would throw away); a forward hook keeps each supported
  layer's input (the activation) and a tensor hook its output gradient (the backprop). Because the
  loss is the sum of per-sample losses, row ``i`` of a backprop is record ``i``'s own;
- each layer's per-sample gradient is a sum over positions ``t`` (sequence entries, pixels) of
  outer products ``g_it a_it^T``; its squared norm is either taken from the Gram matrices,
  ``sum_ts (a_it . a_is)(g_it . g_is)`` (the "ghost norm": no per-sample gradient is formed), or
  from the per-sample gradient itself, whichever needs fewer operations for the layer's shapes
  (convolutions go through ``unfold``; a transposed convolution is the adjoint of a convolution, so
  its activation and backprop swap roles);
- the per-sample clip factor is Opacus' ``min(1, C / (norm + 1e-6))`` over the norm of the record's
  whole gradient (all layers), and the clipped sum of a layer is one matrix product of the
  factor-weighted backprops with the activations ("book-keeping": no second backward pass).

Noise, normalizer and the optimizer step stay in :mod:`fedsynth.privacy.dpsgd`; this module only
replaces where the clipped sum comes from. Layers it cannot handle are refused when the network
is built (their per-sample gradients would be missing, not approximated).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

#: The layer types whose per-sample gradient norms and clipped sums this engine computes.
SUPPORTED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.GroupNorm, nn.Embedding)

#: Opacus' constant in the clip factor min(1, C / (norm + 1e-6)); the same here, so both engines clip alike.
CLIP_EPS = 1e-6


@dataclass
class _Use:
    """One call of a layer in the current step: its input and, after backward, its output gradient."""

    activation: torch.Tensor
    backprop: torch.Tensor | None = None


@dataclass
class _LayerGrads:
    """What one layer contributes to a step: squared per-sample norms (b,) and, once the clip
    factors are known, a function from factors to the clipped sums of its trainable parameters."""

    norms2: torch.Tensor
    sums: Any  # Callable[[torch.Tensor], dict[nn.Parameter, torch.Tensor]]


def unsupported_layers(module: nn.Module) -> list[str]:
    """Names of the layers with trainable parameters that this engine cannot clip exactly (empty
    when it can run the network): unknown layer types, and options that change the gradient."""
    problems = []
    for name, layer in module.named_modules():
        own = [p for p in layer.parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        kind = type(layer).__name__
        if len(own) != len(list(layer.parameters(recurse=False))):
            problems.append(f"{name or '<root>'} ({kind} with some parameters frozen)")
        elif not isinstance(layer, SUPPORTED):
            problems.append(f"{name or '<root>'} ({kind})")
        elif isinstance(layer, nn.Conv2d | nn.ConvTranspose2d) and (
            layer.groups != 1 or isinstance(layer.padding, str) or layer.padding_mode != "zeros"
        ):
            problems.append(f"{name} ({kind} with groups, string padding or non-zero padding mode)")
        elif isinstance(layer, nn.Embedding) and (layer.sparse or layer.scale_grad_by_freq or layer.max_norm):
            problems.append(f"{name} ({kind} with sparse, scale_grad_by_freq or max_norm)")
    return problems


class GhostClipping:
    """Captures the activations and backprops of a network's layers and turns them into per-sample
    clipped gradient sums (see the module docstring). ``module`` is the plain network."""

    def __init__(self, module: nn.Module) -> None:
        problems = unsupported_layers(module)
        if problems:
            raise ValueError(
                "train.dp_engine = 'ghost' cannot clip these layers exactly: "
                + ", ".join(problems)
                + "; use train.dp_engine = 'hooks'"
            )
        self.module = module
        self.params = [p for p in module.parameters() if p.requires_grad]
        self.layers = [m for m in module.modules() if any(p.requires_grad for p in m.parameters(recurse=False))]
        self.uses: dict[nn.Module, list[_Use]] = {m: [] for m in self.layers}
        #: False while the generator backpropagates through the network (nothing is recorded).
        self.enabled = True
        self._capturing = False
        for layer in self.layers:
            layer.register_forward_hook(self._capture)

    # -- capture ---------------------------------------------------------------------------------
    @contextmanager
    def capturing(self) -> Iterator[None]:
        """Record the layers' inputs and output gradients of the forward run inside; the network's
        trainable parameters do not require gradients meanwhile (their sums are computed here)."""
        if not self.enabled or not torch.is_grad_enabled() or self._capturing:
            yield
            return
        self._capturing = True
        for p in self.params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in self.params:
                p.requires_grad_(True)
            self._capturing = False

    def _capture(self, layer: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if not self._capturing:
            return None
        if not output.requires_grad:
            # Nothing before this layer needs a gradient (its input is data): start the graph here.
            output = output.detach().requires_grad_(True)
        use = _Use(args[0].detach())

        def keep(grad: torch.Tensor) -> None:
            use.backprop = grad.detach()

        output.register_hook(keep)
        self.uses[layer].append(use)
        return output

    def clear(self) -> None:
        """Forget what was recorded (after a step, or a forward that was not backpropagated)."""
        for uses in self.uses.values():
            uses.clear()

    # -- clipping --------------------------------------------------------------------------------
    def clipped_sums(self, max_grad_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The per-sample clipped gradient sums of the recorded backward pass, one per trainable
        parameter (in :attr:`params` order), and the per-sample norms before clipping.

        Raises when nothing was recorded (a forward that bypassed :class:`GhostModule`, or no
        backward): an empty Poisson batch is :meth:`empty_sums`, never an empty recording.
        """
        with torch.no_grad():
            return self._clipped_sums(max_grad_norm)

    def _clipped_sums(self, max_grad_norm: float) -> tuple[list[torch.Tensor], torch.Tensor]:
        layers = []
        for layer in self.layers:
            done = [u for u in self.uses[layer] if u.backprop is not None]
            if done:  # a call whose output did not reach the loss contributes nothing
                layers.append(self._layer_grads(layer, done))
        if not layers:
            raise RuntimeError("ghost clipping recorded no backward pass (run the network through its GhostModule)")
        sizes = {len(g.norms2) for g in layers}
        if len(sizes) != 1:
            raise RuntimeError(f"layers saw different batch sizes {sorted(sizes)}: rows must be records")
        norms = torch.stack([g.norms2 for g in layers]).sum(dim=0).clamp(min=0).sqrt()
        factors = (max_grad_norm / (norms + CLIP_EPS)).clamp(max=1.0)
        sums: dict[nn.Parameter, torch.Tensor] = {}
        for g in layers:
            sums.update(g.sums(factors))
        self.clear()
        return [sums[p] if p in sums else torch.zeros_like(p) for p in self.params], norms

    def empty_sums(self) -> list[torch.Tensor]:
        """The clipped sum of an empty batch: zeros (the step's noise is all it releases)."""
        self.clear()
        return [torch.zeros_like(p) for p in self.params]

    def _layer_grads(self, layer: nn.Module, uses: list[_Use]) -> _LayerGrads:
        if isinstance(layer, nn.Linear):
            a = _cat([u.activation.reshape(len(u.activation), -1, layer.in_features) for u in uses], dim=1)
            g = _cat([_rows(u, layer.out_features) for u in uses], dim=1)
            return _outer_layer(a, g, layer.weight, layer.bias, g.sum(dim=1))
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            return _conv_layer(layer, uses)
        if isinstance(layer, nn.GroupNorm):
            weight = bias = None
            for u in uses:
                assert u.backprop is not None
                grad = u.backprop.flatten(2)
                normed = F.group_norm(u.activation, layer.num_groups, eps=layer.eps).flatten(2)
                w, b = (normed * grad).sum(dim=2), grad.sum(dim=2)
                weight, bias = (w, b) if weight is None else (weight + w, bias + b)
            assert weight is not None and bias is not None
            return _per_sample_layer({layer.weight: weight, layer.bias: bias})
        if isinstance(layer, nn.Embedding):
            return _embedding_layer(layer, uses)
        raise AssertionError(f"unsupported layer {layer}")  # refused in __init__


def _cat(parts: list[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat`` without the copy when a layer ran once (the usual case)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _rows(use: _Use, width: int, channels_first: bool = False) -> torch.Tensor:
    """A use's backprop as (b, positions, width)."""
    assert use.backprop is not None
    g = use.backprop
    if channels_first:
        return g.flatten(2).transpose(1, 2)
    return g.reshape(len(g), -1, width)


def _outer_layer(
    a: torch.Tensor, g: torch.Tensor, weight: nn.Parameter, bias: nn.Parameter | None, bias_rows: torch.Tensor
) -> _LayerGrads:
    """A layer whose per-sample weight gradient is ``sum_t g_t a_t^T`` (a: (b, T, i), g: (b, T, o),
    weight viewed as (o, i)) and whose per-sample bias gradient is ``bias_rows`` (b, o)."""
    b, positions, width_in = a.shape
    width_out = g.shape[2]
    per_sample: torch.Tensor | None = None
    if positions == 1:
        norms2 = a.pow(2).sum(dim=(1, 2)) * g.pow(2).sum(dim=(1, 2))
    elif positions * (width_in + width_out) <= width_in * width_out:
        # Ghost norm: <A A^T, G G^T> per sample, (b, T, T) instead of (b, o, i).
        norms2 = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2))
    else:
        per_sample = torch.bmm(g.transpose(1, 2), a)  # (b, o, i): smaller than the Gram matrices here
        norms2 = per_sample.pow(2).sum(dim=(1, 2))
    has_bias = bias is not None
    if has_bias:
        norms2 = norms2 + bias_rows.pow(2).sum(dim=1)

    def sums(factors: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        if per_sample is not None:
            w = torch.einsum("b,boi->oi", factors, per_sample)
        else:
            w = (g * factors.view(b, 1, 1)).reshape(b * positions, width_out).T @ a.reshape(b * positions, width_in)
        out = {weight: w.reshape(weight.shape)}
        if has_bias:
            assert bias is not None
            out[bias] = (factors @ bias_rows).reshape(bias.shape)
        return out

    return _LayerGrads(norms2, sums)


def _conv_layer(layer: nn.Conv2d | nn.ConvTranspose2d, uses: list[_Use]) -> _LayerGrads:
    """A convolution (or transposed convolution) as the outer-product sum ``sum_t g_t a_t^T`` over
    its positions t: for a convolution, a = the unfolded input patch and g = the output gradient
    at an output pixel; a transposed convolution is the adjoint of a convolution, so a = the
    unfolded output gradient and g = the input at an input pixel. The ghost norm needs the unfolded
    tensors; otherwise the per-sample weight gradients come from one grouped convolution backward
    (one group per record, no unfolding) and are dropped as soon as their norms are taken. The
    clipped sum is one ordinary weight gradient of the factor-weighted output gradients."""
    transposed = isinstance(layer, nn.ConvTranspose2d)
    weight, bias = layer.weight, layer.bias
    b = len(uses[0].activation)
    grads = [u.backprop for u in uses]
    assert all(g is not None for g in grads)
    positions = sum((u.activation if transposed else g)[0, 0].numel() for u, g in zip(uses, grads))  # type: ignore[index]
    width_out = weight.shape[0]  # conv: out channels; transposed: in channels
    width_in = weight[0].numel()
    bias_rows = sum(g.flatten(2).sum(dim=2) for g in grads)  # type: ignore[union-attr]
    kept: torch.Tensor | None = None  # per-sample weight gradients, when small enough to keep
    if positions * (width_in + width_out) <= width_in * width_out:
        kernel = dict(dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
        if transposed:
            a = _cat([F.unfold(g, layer.kernel_size, **kernel).transpose(1, 2) for g in grads], dim=1)  # type: ignore[arg-type]
            g_rows = _cat([u.activation.flatten(2).transpose(1, 2) for u in uses], dim=1)
            if a.shape[1] != g_rows.shape[1]:
                raise RuntimeError(f"{layer}: the output size does not invert the input size")
        else:
            a = _cat([F.unfold(u.activation, layer.kernel_size, **kernel).transpose(1, 2) for u in uses], dim=1)
            g_rows = _cat([g.flatten(2).transpose(1, 2) for g in grads], dim=1)  # type: ignore[union-attr]
        norms2 = (torch.bmm(a, a.transpose(1, 2)) * torch.bmm(g_rows, g_rows.transpose(1, 2))).sum(dim=(1, 2))
        del a, g_rows
    else:
        per_sample = sum(
            _conv_weight_grad(layer, u.activation, g, per_sample=True).reshape(b, -1)  # type: ignore[arg-type]
            for u, g in zip(uses, grads)
        )
        assert isinstance(per_sample, torch.Tensor)
        norms2 = per_sample.pow(2).sum(dim=1)
        if per_sample.numel() <= sum(g.numel() for g in grads):  # type: ignore[union-attr]
            # No larger than the backprops already held (few input channels): keep them for the
            # clipped sum, a cheap product, instead of a slow thin convolution backward.
            kept = per_sample
        del per_sample
    if bias is not None:
        assert isinstance(bias_rows, torch.Tensor)
        norms2 = norms2 + bias_rows.pow(2).sum(dim=1)

    def sums(factors: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        if kept is not None:
            total = (factors @ kept).reshape(weight.shape)
        else:
            scale = factors.view(b, 1, 1, 1)
            total = sum(
                _conv_weight_grad(layer, u.activation, g * scale, per_sample=False)  # type: ignore[operator]
                for u, g in zip(uses, grads)
            )
        out = {weight: total}
        if bias is not None:
            out[bias] = (factors @ bias_rows).reshape(bias.shape)
        return out

    return _LayerGrads(norms2, sums)


def _conv_weight_grad(
    layer: nn.Conv2d | nn.ConvTranspose2d, x: torch.Tensor, grad: torch.Tensor, per_sample: bool
) -> torch.Tensor:
    """The weight gradient of one call of ``layer`` on input ``x`` with output gradient ``grad``,
    summed over the batch, or per record (``per_sample``: the batch folded into the channels
    and one group per record; result (b * out, ...) in the weight's layout)."""
    transposed = isinstance(layer, nn.ConvTranspose2d)
    weight = layer.weight
    groups = 1
    if per_sample:
        b = len(x)
        groups = b
        x = x.reshape(1, b * x.shape[1], *x.shape[2:])
        grad = grad.reshape(1, b * grad.shape[1], *grad.shape[2:])
        weight = weight.new_empty((b * weight.shape[0], *weight.shape[1:]))  # only its shape is read
    output_padding = [0, 0]
    if transposed:  # what the forward call's output size implied (output_size= or output_padding)
        output_padding = [
            grad.shape[2 + i]
            - (
                (x.shape[2 + i] - 1) * layer.stride[i]
                - 2 * layer.padding[i]
                + layer.dilation[i] * (layer.kernel_size[i] - 1)
                + 1
            )
            for i in range(2)
        ]
    return torch.ops.aten.convolution_backward(
        grad,
        x,
        weight,
        None,
        list(layer.stride),
        list(layer.padding),
        list(layer.dilation),
        transposed,
        output_padding,
        groups,
        [False, True, False],
    )[1]


def _per_sample_layer(grads: dict[nn.Parameter, torch.Tensor]) -> _LayerGrads:
    """A layer whose per-sample gradients are small enough to form: (b, *shape) per parameter."""
    norms2 = sum(g.flatten(1).pow(2).sum(dim=1) for g in grads.values())
    assert isinstance(norms2, torch.Tensor)

    def sums(factors: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        return {p: (factors @ g.flatten(1)).reshape(p.shape) for p, g in grads.items()}

    return _LayerGrads(norms2, sums)


def _embedding_layer(layer: nn.Embedding, uses: list[_Use]) -> _LayerGrads:
    """Embedding: record i's gradient adds its backprop rows g_it to the rows of its indices; two
    positions of one record that share an index add up, so the squared norm is
    ``sum_ts [idx_t = idx_s] g_t . g_s``."""
    idx = _cat([u.activation.reshape(len(u.activation), -1) for u in uses], dim=1)
    g = _cat([_rows(u, layer.embedding_dim) for u in uses], dim=1)
    if layer.padding_idx is not None:  # the padding row gets no gradient
        g = g * (idx != layer.padding_idx).unsqueeze(2).to(g.dtype)
    same = (idx.unsqueeze(2) == idx.unsqueeze(1)).to(g.dtype)
    norms2 = (same * torch.bmm(g, g.transpose(1, 2))).sum(dim=(1, 2))
    b = len(idx)

    def sums(factors: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
        weighted = (g * factors.view(b, 1, 1)).reshape(-1, layer.embedding_dim)
        total = torch.zeros_like(layer.weight).index_add_(0, idx.reshape(-1), weighted)
        return {layer.weight: total}

    return _LayerGrads(norms2, sums)


class GhostModule(nn.Module):
    """The network as a private step calls it: runs ``module`` while :class:`GhostClipping` records
    (plain call when recording is off or gradients are disabled). Attributes not found here are
    the wrapped module's."""

    def __init__(self, module: nn.Module, clipping: GhostClipping) -> None:
        super().__init__()
        self._module = module
        self.clipping = clipping

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with self.clipping.capturing():
            return self._module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self._modules["_module"], name)
