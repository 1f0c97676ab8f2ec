"""Entropy models and the real entropy coder (bytes in, bytes out).

Follows Ballé et al. 2018 ("Variational image compression with a scale hyperprior") and
Minnen et al. 2018 (mean-scale Gaussian conditional):

::

    z  ──► FactorizedDensity (per channel, learned, non-parametric)   ──► ANS (Categorical)
    y  ──► GaussianConditional: residual round(y - mu) ~ N(0, sigma²) ──► ANS (QuantizedLaplace
                                                            of the same variance, see _Y_MODEL)

Training uses additive uniform noise and the differentiable likelihoods below; coding uses
``constriction``'s ANS coder. Bit rates reported anywhere in mostore are counted from the bytes
these functions return, never from the likelihoods.

Determinism: the coder's probability tables must be bit-identical at encode and decode time.
The z tables are frozen to integer counts when a checkpoint is exported; y scales are snapped
to a fixed table (``SCALE_TABLE``), and the index into it is what both sides compute.
"""

from __future__ import annotations

import math

import constriction
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from mostore.errors import CorruptBitstreamError

#: symbols of y residuals are clamped to [-Y_RANGE, Y_RANGE]
Y_RANGE = 2048
#: symbols of z are clamped to [-Z_RANGE, Z_RANGE]
Z_RANGE = 48
SCALE_MIN = 0.11
SCALE_MAX = 256.0
#: the scales a coded Gaussian can have (CompressAI's choice: 64 log-spaced levels)
SCALE_TABLE = np.exp(np.linspace(math.log(SCALE_MIN), math.log(SCALE_MAX), 64))
_LOG_SCALE_TABLE = np.log(SCALE_TABLE)
#: integer precision of frozen z tables
_PMF_TOTAL = 1 << 16


def _lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    """max(x, bound) whose gradient still pushes values below the bound upward."""
    return x + (bound - x).clamp(min=0).detach()


class FactorizedDensity(nn.Module):
    """Ballé's non-parametric per-channel density (appendix 6.1 of the hyperprior paper).

    A monotone function c(x) per channel built from softplus-positive matrices; the
    likelihood of an integer-centred unit bin is sigmoid(c(x+½)) − sigmoid(c(x−½)).
    """

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.rand(channels, dims[i + 1], 1) - 0.5))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        self.channels = channels

    def _logits_cdf(self, x: torch.Tensor) -> torch.Tensor:
        # x: (C, 1, N) -> (C, 1, N)
        for i, matrix in enumerate(self.matrices):
            x = torch.matmul(F.softplus(matrix), x) + self.biases[i]
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        """Probability mass of the unit bin around each element of z (B, C, H, W)."""
        b, c, h, w = z.shape
        v = z.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower = self._logits_cdf(v - 0.5)
        upper = self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail that keeps precision
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()
        return p.reshape(c, b, h, w).permute(1, 0, 2, 3)

    @torch.no_grad()
    def frozen_pmf(self) -> np.ndarray:
        """Integer counts (C, 2·Z_RANGE+1) for the coder, each ≥ 1; saved with a checkpoint."""
        support = torch.arange(-Z_RANGE, Z_RANGE + 1, dtype=torch.float32)
        v = support.view(1, 1, -1).expand(self.channels, 1, -1)
        lower, upper = self._logits_cdf(v - 0.5), self._logits_cdf(v + 0.5)
        sign = -torch.sign(lower + upper)
        p = (torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower)).abs()[:, 0, :].double()
        p = p / p.sum(dim=1, keepdim=True)
        return np.maximum(np.round(p.numpy() * _PMF_TOTAL), 1.0)


def gaussian_likelihood(residual: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Mass of the unit bin around ``residual`` under N(0, scale²) (residual = y − mean)."""
    scale = _lower_bound(scale, SCALE_MIN)
    r = residual.abs()  # symmetric: evaluate in the left tail for precision
    upper = 0.5 * torch.erfc(((r - 0.5) / scale) / math.sqrt(2.0))
    lower = 0.5 * torch.erfc(((r + 0.5) / scale) / math.sqrt(2.0))
    return upper - lower


def likelihood_floor(p: torch.Tensor, floor: float = 1e-9) -> torch.Tensor:
    return _lower_bound(p, floor)


_LOG_STEP = (_LOG_SCALE_TABLE[-1] - _LOG_SCALE_TABLE[0]) / (len(SCALE_TABLE) - 1)


def scale_offsets(log_gain: torch.Tensor) -> torch.Tensor:
    """Per-channel float64 offsets for :func:`scale_indexes` at one quality level's gains."""
    return (log_gain.double() - _LOG_SCALE_TABLE[0]) / _LOG_STEP - 1e-9


def scale_indexes(log_scale: torch.Tensor, offsets: torch.Tensor) -> np.ndarray:
    """Index of the smallest table scale ≥ exp(log_scale)·gain (uint8), from float64 log-scales.

    Pure float64 arithmetic (no table search); encoder and decoder call this same function on
    the same inputs, so they get the same indexes."""
    pos = torch.ceil(log_scale.double() / _LOG_STEP + offsets[None, :, None, None])
    return pos.clamp_(0, len(SCALE_TABLE) - 1).to(torch.uint8).numpy()


# ---- the coder -------------------------------------------------------------------------

# y residuals are coded with a Laplace of the predicted Gaussian's variance (b = σ/√2): measured on 8
# Kodak images, constriction codes it about 2x faster than a quantized Gaussian, for +0.1% (best
# quality) to +2.7% (lowest) bytes. Training keeps the Gaussian likelihood.
_Y_MODEL = constriction.stream.model.QuantizedLaplace(-Y_RANGE, Y_RANGE)
_Y_TABLE = SCALE_TABLE / math.sqrt(2.0)


def _words_to_bytes(words: np.ndarray) -> bytes:
    return words.astype("<u4").tobytes()


def _bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise CorruptBitstreamError("entropy-coded payload length is not a multiple of 4 bytes")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


class ZCoder:
    """Codes z with one fixed categorical model per channel (built once from frozen counts)."""

    def __init__(self, pmf: np.ndarray):
        self.models = [constriction.stream.model.Categorical(row, perfect=False) for row in pmf]

    def encode(self, symbols: np.ndarray) -> bytes:
        """symbols: int (C, H, W) already clamped to ±Z_RANGE."""
        flat = (symbols.reshape(symbols.shape[0], -1) + Z_RANGE).astype(np.int32)
        coder = constriction.stream.stack.AnsCoder()
        for c in range(len(flat) - 1, -1, -1):  # a stack: the last channel goes in first
            coder.encode_reverse(flat[c], self.models[c])
        return _words_to_bytes(coder.get_compressed())

    def decode(self, data: bytes, shape: tuple[int, int, int]) -> np.ndarray:
        c, h, w = shape
        if c != len(self.models):
            raise CorruptBitstreamError(f"hyper-latent has {c} channels; the codec has {len(self.models)}")
        try:
            coder = constriction.stream.stack.AnsCoder(_bytes_to_words(data))
            flat = np.stack([coder.decode(model, h * w) for model in self.models])
        except CorruptBitstreamError:
            raise
        except Exception as exc:  # constriction raises plain errors on garbage
            raise CorruptBitstreamError(f"hyper-latent payload does not decode: {exc}") from exc
        return flat.astype(np.int64).reshape(c, h, w) - Z_RANGE


def encode_y(symbols: np.ndarray, scale_idx: np.ndarray) -> bytes:
    """symbols: int residuals clamped to ±Y_RANGE; scale_idx: uint8 of the same shape."""
    stds = _Y_TABLE[scale_idx.reshape(-1)]
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.reshape(-1).astype(np.int32), _Y_MODEL, np.zeros_like(stds), stds)
    return _words_to_bytes(coder.get_compressed())


def decode_y(data: bytes, scale_idx: np.ndarray) -> np.ndarray:
    stds = _Y_TABLE[scale_idx.reshape(-1)]
    try:
        coder = constriction.stream.stack.AnsCoder(_bytes_to_words(data))
        flat = coder.decode(_Y_MODEL, np.zeros_like(stds), stds)
    except CorruptBitstreamError:
        raise
    except Exception as exc:
        raise CorruptBitstreamError(f"latent payload does not decode: {exc}") from exc
    return flat.astype(np.int64).reshape(scale_idx.shape)
