"""Denoiser networks: the published background network and our latent-space variant.

Two variants share one interface (:class:`xanes_lib.denoise.Denoiser` wraps them):

``paper``
    The published background network: one 2D transmission image at a time (energies in the
    batch dimension), residual-in-residual dense blocks (ESRGAN's RRDB), 1 channel in, the
    multiplicative background ``B`` out. ``T_corrected = T / B``; the photon noise stays.
``latent``
    Ours. The stack is first projected by the closed-form Beer-Lambert fit
    (:mod:`xanes_lib.physics`) onto a few coefficient maps (the latent space: one per
    reference state, plus ``E^-3`` and a constant). A small U-Net denoises those maps at full
    resolution, given a map of the local noise level; the background is what the denoised
    physics model leaves unexplained, smoothed in space. Cost no longer grows with the
    number of energies times the network size, and a uniform particle cannot be taken for
    background, because the background is defined by the energy dependence, not by shape.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

#: Default hyper-parameters of each variant.
DEFAULT_HPARAMS = {
    "paper": {"n_features": 16, "n_blocks": 4, "growth": 16, "residual_scale": 0.2},
    "latent": {"n_coefficients": 4, "width": 24, "depth": 3, "smooth_block": 8, "smooth_sigma_blocks": 1.0},
}


class DenseBlock(nn.Module):
    """Five 3x3 convolutions, each fed with the concatenation of all earlier outputs."""

    def __init__(self, n_features: int, growth: int, residual_scale: float):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(n_features + i * growth, growth if i < 4 else n_features, 3, padding=1)
            for i in range(5))
        self.scale = residual_scale

    def forward(self, x):
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, dim=1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + self.scale * out


class RRDB(nn.Module):
    """Residual in residual: three dense blocks and a scaled skip around them."""

    def __init__(self, n_features: int, growth: int, residual_scale: float):
        super().__init__()
        self.blocks = nn.Sequential(*(DenseBlock(n_features, growth, residual_scale) for _ in range(3)))
        self.scale = residual_scale

    def forward(self, x):
        return x + self.scale * self.blocks(x)


class PaperBackgroundNet(nn.Module):
    """The published background network (RRDB trunk, global skip, two output convolutions).

    Input (N, 1, H, W) transmission images (N = energies x stacks); output (N, 1, H, W)
    multiplicative background ``B = 1 + net(T)``.

    Notes
    -----
    The method's text gives 16 features, 4 RRDBs of 3 dense blocks of five convolutions and
    about 0.37 M parameters; with a growth of 32 that structure has 1.13 M parameters, so we
    keep the structure and the parameter budget with a growth of 16 (0.42 M).
    """

    def __init__(self, n_features: int = 16, n_blocks: int = 4, growth: int = 16,
                 residual_scale: float = 0.2):
        super().__init__()
        self.head = nn.Conv2d(1, n_features, 3, padding=1)
        self.trunk = nn.Sequential(*(RRDB(n_features, growth, residual_scale) for _ in range(n_blocks)))
        self.trunk_conv = nn.Conv2d(n_features, n_features, 3, padding=1)
        self.out1 = nn.Conv2d(n_features, n_features, 3, padding=1)
        self.out2 = nn.Conv2d(n_features, 1, 3, padding=1)
        nn.init.zeros_(self.out2.weight)  # start from B = 1: no correction
        nn.init.zeros_(self.out2.bias)

    def forward(self, transmission):
        x = self.head(transmission - 1.0)
        x = x + self.trunk_conv(self.trunk(x))
        return 1.0 + self.out2(F.leaky_relu(self.out1(x), 0.2))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.LeakyReLU(0.1),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.LeakyReLU(0.1))


class LatentUNet(nn.Module):
    """U-Net on the coefficient maps: (N, P + 1, H, W) in, (N, P + 1, H, W) out.

    The input is the P normalised coefficient maps of the Beer-Lambert fit and one map of
    the local noise level. The first P output channels are added to the coefficient maps
    (residual learning, so an untrained network returns the plain fit); the last one is the
    logit of the weight of each pixel in the background estimate. H and W must be
    multiples of ``2 ** (depth - 1)`` (the tiler pads to this). ``smooth_block`` and
    ``smooth_sigma_blocks`` set the background's smoothing (:mod:`xanes_lib.denoise`).
    """

    def __init__(self, n_coefficients: int = 4, width: int = 24, depth: int = 3, smooth_block: int = 8,
                 smooth_sigma_blocks: float = 1.0):
        super().__init__()
        self.depth = depth
        widths = [width * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList()
        c = n_coefficients + 1
        for w in widths:
            self.down.append(_conv_block(c, w))
            c = w
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.fuse.append(_conv_block(2 * w, w))
            c = w
        self.out = nn.Conv2d(c, n_coefficients + 1, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def multiple(self) -> int:
        """Image sizes must be multiples of this."""
        return 2 ** (self.depth - 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, reversed(skips[:-1])):
            x = fuse(torch.cat([up(x), skip], dim=1))
        return self.out(x)


def build_network(variant: str, **hparams) -> nn.Module:
    """Instantiate a network variant with its hyper-parameters (defaults filled in).

    Parameters
    ----------
    variant : {"paper", "latent"}
        Which network.
    **hparams
        Overrides of :data:`DEFAULT_HPARAMS` for that variant.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        For an unknown variant or hyper-parameter.

    Examples
    --------
    >>> net = build_network("paper")
    >>> 0.3e6 < count_parameters(net) < 0.5e6
    True
    """
    if variant not in DEFAULT_HPARAMS:
        raise ValueError(f"unknown network variant {variant!r}; choose from {sorted(DEFAULT_HPARAMS)}.")
    unknown = set(hparams) - set(DEFAULT_HPARAMS[variant])
    if unknown:
        raise ValueError(f"unknown hyper-parameter(s) {sorted(unknown)} for variant {variant!r}; "
                         f"allowed: {sorted(DEFAULT_HPARAMS[variant])}.")
    full = {**DEFAULT_HPARAMS[variant], **hparams}
    return PaperBackgroundNet(**full) if variant == "paper" else LatentUNet(**full)


def full_hparams(variant: str, **hparams) -> dict:
    """The complete hyper-parameter dictionary of a variant (defaults plus overrides)."""
    build_network(variant, **hparams)  # validates
    return {**DEFAULT_HPARAMS[variant], **hparams}


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
