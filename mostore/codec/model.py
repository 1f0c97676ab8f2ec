"""The learned image codec: ``Codec.encode(image) -> bytes``, ``decode(bytes) -> image``.

Nonlinear transform coding (Ballé et al. 2018, mean-scale hyperprior of Minnen et al. 2018)
with a variable rate: one set of transforms serves every quality level; a per-level,
per-channel gain (Cui et al. 2021, "asymmetric gained" units) scales y before rounding::

    image ─► Analysis ─► y ──► ×gain[q] ─► round(·−μ)+μ ─► ×inv_gain[q] ─► ŷ ─► Synthesis ─► image
                         └──► HyperAnalysis ─► z ─► round ─► ẑ ─► HyperSynthesis ─► (μ, σ) of y
    bytes: ANS(ẑ | factorized density)  +  ANS(round(y·g − μ·g) | N(0, (σ·g)²))

``latents(bytes)`` returns ŷ (B, M, H/16, W/16) without running the synthesis: what the machine
heads read. ŷ lives in the same domain at every quality level.

Input: RGB as is; grey (L) is coded as RGB and decoded back to L; any alpha channel is dropped
after compositing the image on white (the header records that the original had one); other
modes (P, I;16, CMYK, ...) are converted to RGB by Pillow. Any size from 1×1 up to
``bitstream.MAX_PIXELS``: images are padded by edge replication to a multiple of 64 and cropped
back after decoding.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from mostore.codec import bitstream, entropy
from mostore.codec.transforms import LOG_SCALE_RANGE, Analysis, HyperAnalysis, HyperSynthesis, Synthesis
from mostore.errors import CodecMismatchError, CorruptBitstreamError, InvalidImageError, NotFoundError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CODEC = "default"


@dataclass
class CodecConfig:
    levels: int = 4  # wavelet levels: latent stride 2^levels
    latent: int = 192  # M, channels of y
    enc_hidden: int = 128
    dec_hidden: int = 192
    refine_hidden: int = 64
    hyper_hidden: int = 128
    hyper: int = 64  # Z, channels of z
    scale_hidden: int = 64  # width of the (float64 at coding time) scale head
    # one λ per quality level (loss = λ·MSE on 0..255 + bpp, as CompressAI)
    lambdas: tuple[float, ...] = field(default=(0.0009, 0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483))
    default_quality: int = 4


    @property
    def qualities(self) -> int:
        return len(self.lambdas)


def _ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class CodecModel(nn.Module):
    """The trainable network. ``forward`` returns the reconstruction and both likelihoods."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        c = config
        self.analysis = Analysis(c.levels, c.latent, c.enc_hidden)
        self.synthesis = Synthesis(c.levels, c.latent, c.dec_hidden, c.refine_hidden)
        self.hyper_analysis = HyperAnalysis(c.latent, c.hyper_hidden, c.hyper)
        self.hyper_synthesis = HyperSynthesis(c.latent, c.hyper_hidden, c.hyper, c.scale_hidden)
        self.density = entropy.FactorizedDensity(c.hyper)
        # initial step sizes follow λ: Δ ∝ λ^-1/2 (high-rate theory), Δ=1 at the middle level
        mid = c.lambdas[len(c.lambdas) // 2]
        log_g = torch.tensor([0.5 * math.log(lam / mid) for lam in c.lambdas]).view(-1, 1)
        self.log_gain = nn.Parameter(log_g.repeat(1, c.latent))
        self.log_inv_gain = nn.Parameter(-log_g.repeat(1, c.latent))

    def init_pca(self, basis: torch.Tensor, mean: torch.Tensor) -> None:
        """Set the linear paths from a PCA: basis (M, 3·4^J) orthonormal rows, mean (3·4^J,)."""
        with torch.no_grad():
            self.analysis.linear.weight.copy_(basis[:, :, None, None])
            self.analysis.linear.bias.copy_(-(basis @ mean))
            self.synthesis.linear.weight.copy_(basis.t()[:, :, None, None])
            self.synthesis.linear.bias.copy_(mean)

    def forward(self, x: torch.Tensor, quality: torch.Tensor, with_latents: bool = False):
        """x: (B,3,H,W) in 0..255, H and W multiples of 64; quality: (B,) 0-based level indexes.

        Returns (x_hat, y_likelihoods, z_likelihoods), and ŷ last with ``with_latents`` (the
        multitask fine-tuning puts a machine head on it).
        """
        y = self.analysis(x)  # (B, M, H/16, W/16)
        z = self.hyper_analysis(y)  # (B, Z, H/64, W/64)
        z_lik = self.density.likelihood(z + torch.empty_like(z).uniform_(-0.5, 0.5))
        mean, log_scale = self.hyper_synthesis(_ste_round(z))
        g = self.log_gain[quality].exp()[:, :, None, None]
        residual = (y - mean) * g
        y_lik = entropy.gaussian_likelihood(
            residual + torch.empty_like(residual).uniform_(-0.5, 0.5), log_scale.exp() * g
        )
        y_hat = (_ste_round(residual) + mean * g) * self.log_inv_gain[quality].exp()[:, :, None, None]
        out = self.synthesis(y_hat), entropy.likelihood_floor(y_lik), entropy.likelihood_floor(z_lik)
        return (*out, y_hat) if with_latents else out


def rd_loss(x, x_hat, y_lik, z_lik, lambdas: torch.Tensor):
    """Per-sample λ·MSE(0..255) + bpp, averaged; returns (loss, mse, bpp) as tensors."""
    pixels = x.shape[2] * x.shape[3]
    bits = -(torch.log2(y_lik).sum(dim=(1, 2, 3)) + torch.log2(z_lik).sum(dim=(1, 2, 3)))
    bpp = bits / pixels
    mse = ((x - x_hat.clamp(0, 255)) ** 2).mean(dim=(1, 2, 3))
    return (lambdas * mse + bpp).mean(), mse.mean(), bpp.mean()


# ---- checkpoints -------------------------------------------------------------------------


def save_checkpoint(model: CodecModel, path: Path, *, half: bool = True, extra: dict | None = None) -> None:
    """Write weights + config + frozen coder tables. ``half`` stores float16 (shipping size)."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    config = asdict(model.config)
    config["lambdas"] = list(config["lambdas"])
    blob = {"config": config, "state": state, "z_pmf": torch.from_numpy(model.density.frozen_pmf())}
    if extra:
        blob["extra"] = extra
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)


def load_model(path: Path) -> tuple[CodecModel, np.ndarray]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dict(blob["config"])
    cfg["lambdas"] = tuple(cfg["lambdas"])
    model = CodecModel(CodecConfig(**cfg))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()})
    model.eval()
    return model, blob["z_pmf"].numpy().astype(np.float64)


# ---- image conversion --------------------------------------------------------------------


def to_rgb_array(image) -> tuple[np.ndarray, str]:
    """PIL image or uint8 array (H,W) / (H,W,3) / (H,W,4) -> (H,W,3) uint8 and the coded mode."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise InvalidImageError(f"image arrays must be uint8, not {image.dtype}")
        if image.ndim == 2:
            image = Image.fromarray(image, "L")
        elif image.ndim == 3 and image.shape[2] in (3, 4):
            image = Image.fromarray(np.ascontiguousarray(image), "RGB" if image.shape[2] == 3 else "RGBA")
        else:
            raise InvalidImageError(f"image arrays must be HxW, HxWx3 or HxWx4, not {image.shape}")
    if not isinstance(image, Image.Image):
        raise InvalidImageError(f"expected a PIL image or a uint8 array, not {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise InvalidImageError("image has no pixels")
    if image.width * image.height > bitstream.MAX_PIXELS:
        from mostore.errors import ImageTooLargeError

        raise ImageTooLargeError(
            f"image is {image.width}x{image.height}; the limit is {bitstream.MAX_PIXELS} pixels"
        )
    if image.mode in ("L", "I;16", "I", "F", "1"):
        mode = "L"
        rgb = image.convert("L").convert("RGB")
    elif image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        mode = "RGBA"
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        rgb = Image.alpha_composite(white, rgba).convert("RGB")
    else:
        mode = "RGB"
        rgb = image.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8), mode


# ---- the codec -----------------------------------------------------------------------------


class Codec:
    """A trained codec, ready to code images.

    >>> codec = Codec.load()                       # the shipped weights, default quality
    >>> data = codec.encode(Image.new("RGB", (40, 30), "red"))
    >>> codec.decode(data).size
    (40, 30)
    """

    def __init__(
        self, model: CodecModel, z_pmf: np.ndarray, codec_id: str, quality: int | None = None, name: str = ""
    ):
        self.name = name or codec_id
        self.model = model.eval()
        self.config = model.config
        self.id = codec_id
        self.quality = self._check_quality(quality or self.config.default_quality)
        self._z_coder = entropy.ZCoder(z_pmf)
        # the head that sets the coder's scales runs in float64 with batch 1 on both sides
        self._scale64 = copy.deepcopy(model.hyper_synthesis.scale).double().eval()
        self._gain64 = model.log_gain.detach().double().exp()
        self._inv_gain64 = model.log_inv_gain.detach().double().exp()
        self._scale_offsets = [entropy.scale_offsets(g) for g in model.log_gain.detach()]

    # construction
    @classmethod
    def load(cls, name: str = DEFAULT_CODEC, quality: int | None = None) -> "Codec":
        """Load shipped weights by name (``mostore/codec/weights/NAME.pt``) or a checkpoint path."""
        path = Path(name)
        if not path.suffix:
            path = WEIGHTS_DIR / f"{name}.pt"
        if not path.is_file():
            shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))
            raise NotFoundError(f"no codec weights {str(name)!r}; shipped: {shipped}")
        return cls.from_checkpoint(path, quality, name=str(name))

    @classmethod
    def find(cls, codec_id: str, quality: int | None = None) -> "Codec | None":
        """The shipped weights whose id is ``codec_id`` (older defaults are kept by id), if any."""
        for path in sorted(WEIGHTS_DIR.glob("*.pt")):
            if weights_id(path) == codec_id:
                return cls.from_checkpoint(path, quality, name=path.stem)
        return None

    @classmethod
    def from_checkpoint(cls, path: Path, quality: int | None = None, name: str | None = None) -> "Codec":
        model, pmf = load_model(path)
        return cls(model, pmf, weights_id(path), quality, name=name or str(Path(path).resolve()))

    @classmethod
    def from_model(cls, model: CodecModel, quality: int | None = None) -> "Codec":
        """Wrap an in-memory model (tests, training); its id hashes its current weights."""
        h = hashlib.sha256()
        for k, v in sorted(model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().numpy().tobytes())
        return cls(model, model.density.frozen_pmf(), h.hexdigest()[:16], quality)

    def _check_quality(self, quality: int) -> int:
        if not isinstance(quality, int) or isinstance(quality, bool) or not 1 <= quality <= self.config.qualities:
            from mostore.errors import InvalidInputError

            raise InvalidInputError(f"quality must be an int in 1..{self.config.qualities}, not {quality!r}")
        return quality

    @property
    def stride(self) -> int:
        return 2**self.config.levels

    # the hyper path: z symbols -> (mean·g, scale indexes); scales in float64
    def _hyper(self, z_sym: torch.Tensor, q: int) -> tuple[torch.Tensor, np.ndarray]:
        with torch.inference_mode():
            mean = self.model.hyper_synthesis.mean(z_sym.float()).double()
            log_scale = self._scale64(z_sym.double()).clamp(*LOG_SCALE_RANGE)
        g = self._gain64[q - 1][None, :, None, None]
        return mean * g, entropy.scale_indexes(log_scale, self._scale_offsets[q - 1])

    # encode
    def encode(self, image, quality: int | None = None) -> bytes:
        """Code one image (PIL image or uint8 array) to a self-describing bitstream."""
        return self._encode(image, quality, latents=False)[0]

    def encode_with_latents(self, image, quality: int | None = None) -> tuple[bytes, torch.Tensor]:
        """Like :meth:`encode`, also returning ŷ, bit-identical to ``latents(bytes)``."""
        return self._encode(image, quality, latents=True)

    def _encode(self, image, quality: int | None, latents: bool) -> tuple[bytes, torch.Tensor | None]:
        q = self._check_quality(quality or self.quality)
        arr, mode = to_rgb_array(image)
        h, w = arr.shape[:2]
        ph, pw = bitstream.padded_size(h, w, self.config.levels)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].float()
        if (ph, pw) != (h, w):
            x = F.pad(x, (0, pw - w, 0, ph - h), mode="replicate")
        with torch.inference_mode():
            y = self.model.analysis(x)
            z = self.model.hyper_analysis(y)
        z_sym = torch.round(z).clamp(-entropy.Z_RANGE, entropy.Z_RANGE)
        mean_g, scale_idx = self._hyper(z_sym, q)
        residual = torch.round(y.double() * self._gain64[q - 1][None, :, None, None] - mean_g)
        residual = residual.clamp_(-entropy.Y_RANGE, entropy.Y_RANGE).to(torch.int32)
        header = bitstream.Header(
            mode=mode,
            codec_id=self.id,
            quality=q,
            levels=self.config.levels,
            width=w,
            height=h,
            channels=self.config.latent,
            hyper_channels=self.config.hyper,
            z_len=0,
            y_len=0,
        )
        z_bytes = self._z_coder.encode(z_sym[0].to(torch.int32).numpy())
        y_bytes = entropy.encode_y(residual[0].numpy(), scale_idx[0])
        data = bitstream.pack(header, z_bytes, y_bytes)
        if not latents:
            return data, None
        y_hat = (residual.double() + mean_g) * self._inv_gain64[q - 1][None, :, None, None]
        return data, self._crop(y_hat.float(), h, w)

    def _crop(self, y_hat: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Drop latent columns/rows that only cover padding."""
        s = self.stride
        return y_hat[..., : -(-height // s), : -(-width // s)]

    def encode_batch(self, images, quality: int | None = None) -> list[bytes]:
        return [self.encode(im, quality) for im in images]

    # decode
    def _parse(self, data: bytes) -> tuple[bitstream.Header, bytes, bytes]:
        header, z_bytes, y_bytes = bitstream.unpack(data)
        if header.codec_id != self.id:
            raise CodecMismatchError(
                f"bitstream was made by codec {header.codec_id}; this codec is {self.id}"
            )
        c = self.config
        if (header.levels, header.channels, header.hyper_channels) != (c.levels, c.latent, c.hyper):
            raise CorruptBitstreamError("bitstream latent layout does not match its codec")
        if header.quality > c.qualities:
            raise CorruptBitstreamError(f"quality {header.quality} > {c.qualities} levels of this codec")
        return header, z_bytes, y_bytes

    def _latents(self, data: bytes) -> tuple[bitstream.Header, torch.Tensor]:
        header, z_bytes, y_bytes = self._parse(data)
        z_sym = self._z_coder.decode(z_bytes, header.hyper_shape)
        mean_g, scale_idx = self._hyper(torch.from_numpy(z_sym)[None], header.quality)
        residual = entropy.decode_y(y_bytes, scale_idx[0])
        y_g = torch.from_numpy(residual)[None].double() + mean_g
        y_hat = y_g * self._inv_gain64[header.quality - 1][None, :, None, None]
        return header, y_hat.float()

    def latents(self, data: bytes) -> torch.Tensor:
        """Entropy-decode to the dequantized latent tensor ŷ (1, M, ⌈H/16⌉, ⌈W/16⌉); no synthesis.

        Latent positions that cover only padding are cropped off."""
        header, y_hat = self._latents(data)
        return self._crop(y_hat, header.height, header.width)

    def latents_batch(self, datas) -> list[torch.Tensor]:
        return [self.latents(d) for d in datas]

    def decode(self, data: bytes) -> Image.Image:
        """Bitstream -> PIL image of the original size (mode L for grey originals, else RGB)."""
        header, y_hat = self._latents(data)
        with torch.inference_mode():
            x = self.model.synthesis(y_hat)
        arr = x[0, :, : header.height, : header.width].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
        image = Image.fromarray(np.ascontiguousarray(arr), "RGB")
        return image.convert("L") if header.mode == "L" else image

    def decode_batch(self, datas) -> list[Image.Image]:
        return [self.decode(d) for d in datas]

    @staticmethod
    def header(data: bytes) -> bitstream.Header:
        """Parse and check a bitstream's header and checksum (no decoding)."""
        return bitstream.verify(data)


def weights_id(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
