"""Every product file layercut writes goes through here: one table of output formats, one
encoder, one atomic file writer.

- ``FORMATS``: output format name → ``OutputFormat`` (Pillow format and options, media type, file
  extension, the Pillow mode written). The CLI's ``--format``, the config's ``output.format`` and
  the server's ``format`` query take their choices from it: a new format is one entry.
- ``encode(pixels, fmt, ...)``: an ``H×W×4`` (or ``H×W×3``) ``uint8`` array → the file's bytes.
- ``write_file(path, data, protect=...)``: bytes → a file, atomically (a unique temp file in the
  same folder, fsync'ed, then ``os.replace``d), never over an input. A symlink at ``path`` is
  replaced by the file, never written through.
- ``write_folder(path, files, protect=...)``: a whole folder of files (``--layers``), atomically
  as a whole: built in a unique temp folder beside ``path``, then renamed into place; a failure
  (a full disk, Ctrl-C) leaves the previous folder, or none, and no temp file or folder.
- ``save_image``: ``encode`` + ``write_file``.

This is the only module of the product (evaluation thumbnails aside) that calls Pillow's save.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

WEBP_MAX_SIDE_PX = 16383  # hard limit of the WebP bitstream


def _png_options(png_compress_level: int, webp_quality: int) -> dict[str, Any]:
    # a low zlib level: on CPU the PNG encoder, not the network, sets the pace for large photos
    return {"compress_level": png_compress_level}


def _webp_options(png_compress_level: int, webp_quality: int) -> dict[str, Any]:
    # Lossy colour at ``webp_quality``, lossless alpha (``alpha_quality=100``): a cut-out's edge
    # is its alpha. ``exact`` is off, so libwebp may change the colour of fully transparent
    # pixels (invisible) for a smaller file.
    return {"quality": webp_quality, "alpha_quality": 100}


@dataclass(frozen=True)
class OutputFormat:
    """One output format.

    ``mode`` is what the file holds: ``"RGBA"`` the colours and the alpha (an ``H×W×3`` input is
    written opaque, as ``RGB``); ``"RGB"`` opaque colours (the caller fills the background first:
    an ``H×W×4`` input must be fully opaque); ``"L"`` the alpha alone as a grey mask (from an
    ``H×W×4`` input's alpha, or an ``H×W`` array). ``options(png_compress_level, webp_quality)``
    gives Pillow's save options.
    """

    name: str
    title: str  # how messages and help name it: "PNG", "WebP"
    pillow_format: str  # "PNG", "WEBP", ...
    extension: str  # ".png"
    media_type: str  # "image/png"
    mode: str  # "RGBA" | "RGB" | "L"
    options: Callable[[int, int], dict[str, Any]]
    max_side_px: int | None = None

    @property
    def carries_alpha(self) -> bool:
        """True when the file keeps the transparency of the cut-out."""
        return self.mode == "RGBA"


FORMATS: dict[str, OutputFormat] = {
    spec.name: spec
    for spec in (
        OutputFormat("png", "PNG", "PNG", ".png", "image/png", "RGBA", _png_options),
        OutputFormat(
            "webp", "WebP", "WEBP", ".webp", "image/webp", "RGBA", _webp_options, WEBP_MAX_SIDE_PX
        ),
        # the alpha alone as a grey 8-bit PNG (``layercut --mask``, the server's ``mask=true``)
        OutputFormat("mask", "PNG mask", "PNG", ".png", "image/png", "L", _png_options),
    )
}
FORMAT_NAMES: tuple[str, ...] = tuple(FORMATS)


def get_format(fmt: str | OutputFormat) -> OutputFormat:
    """The ``OutputFormat`` named ``fmt`` (any case); ``ValueError`` listing the known ones."""
    if isinstance(fmt, OutputFormat):
        return fmt
    spec = FORMATS.get(str(fmt).lower())
    if spec is None:
        raise ValueError(
            f"unknown output format {fmt!r}; expected one of: {', '.join(FORMAT_NAMES)}"
        )
    return spec


def check_fits(fmt: str | OutputFormat, hw: tuple[int, int], where: str = "") -> None:
    """``ValueError`` when an ``hw`` image exceeds the format's side limit (WebP: 16383 px)."""
    spec = get_format(fmt)
    if spec.max_side_px is not None and max(hw) > spec.max_side_px:
        prefix = f"{where}: " if where else ""
        raise ValueError(
            f"{prefix}{spec.title} is limited to {spec.max_side_px} px per side, "
            f"got shape {tuple(hw)}; use png"
        )


def _check_levels(png_compress_level: int, webp_quality: int) -> None:
    if not 0 <= png_compress_level <= 9:
        raise ValueError(f"png_compress_level must be in 0..9, got {png_compress_level}")
    if not 0 <= webp_quality <= 100:
        raise ValueError(f"webp_quality must be in 0..100, got {webp_quality}")


def _to_pil(pixels: np.ndarray, mode: str) -> Image.Image:
    """The Pillow image of ``pixels`` in the format's ``mode`` (see ``OutputFormat``)."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 array, got {getattr(pixels, 'dtype', type(pixels).__name__)}"
        )
    shape = pixels.shape
    if 0 in shape[:2] or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and shape[2] not in (3, 4)):
        raise ValueError(f"expected non-empty H×W×3|4 uint8, got shape {shape}")
    pixels = np.ascontiguousarray(pixels)
    channels = 1 if pixels.ndim == 2 else shape[2]
    if mode == "L":
        if channels == 3:
            raise ValueError(f"a mask output needs the alpha: H×W×4 or H×W, got shape {shape}")
        return Image.fromarray(pixels if channels == 1 else pixels[:, :, 3], "L")
    if channels == 1:
        raise ValueError(f"a colour output needs H×W×3|4, got shape {shape}")
    if mode == "RGB" and channels == 4:
        if not bool((pixels[:, :, 3] == 255).all()):
            raise ValueError("an opaque output needs the background filled first (alpha < 255)")
        pixels = pixels[:, :, :3]
    return Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")


def encode(
    pixels: np.ndarray,
    fmt: str | OutputFormat = "png",
    *,
    png_compress_level: int = 1,
    webp_quality: int = 90,
) -> bytes:
    """The bytes of a ``fmt`` file holding ``pixels``.

    ``pixels``: ``H×W×4`` RGBA or ``H×W×3`` RGB ``uint8`` (``H×W`` for a mask format); how they
    map to the file is the format's ``mode`` (see ``OutputFormat``). ``ValueError`` for an
    unknown format, a bad array or option, or an image over the format's size limit.
    """
    spec = get_format(fmt)
    _check_levels(png_compress_level, webp_quality)
    image = _to_pil(pixels, spec.mode)
    check_fits(spec, (image.height, image.width))
    out = io.BytesIO()
    image.save(out, spec.pillow_format, **spec.options(png_compress_level, webp_quality))
    return out.getvalue()


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` name the same file (after symlinks; hard links too)."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
    except (OSError, RuntimeError):  # RuntimeError: symlink loop
        pass
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: they cannot be the same file
        return False


def write_file(path: str | Path, data: bytes, protect: Iterable[str | Path] = ()) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``.

    A unique temp file (``mkstemp``: created exclusively, so a symlink planted at any temp-like
    name is never followed) in the same folder is written, fsync'ed and ``os.replace``d over
    ``path``: a crash leaves the old file or the whole new one, and a symlink at ``path`` is
    replaced, not written through. The temp file is removed on any failure, Ctrl-C included.
    ``ValueError`` when ``path`` is the same file as one of ``protect`` (the inputs; symlinks
    and hard links too).
    """
    path = Path(path)
    for other in protect:
        if same_file(path, Path(other)):
            raise ValueError(f"{path}: refusing to overwrite an input ({other})")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def save_image(
    path: str | Path,
    rgba: np.ndarray,
    fmt: str = "png",
    png_compress_level: int = 1,
    webp_quality: int = 90,
    protect: Iterable[str | Path] = (),
) -> Path:
    """Write ``rgba`` (``H×W×4 uint8``) to ``path`` in format ``fmt``, atomically; return ``path``.

    ``ValueError`` when ``path`` is the same file as one of ``protect`` (inputs; symlinks, hard
    links too), or for a bad array, format or option; nothing is written then.
    """
    path = Path(path)
    spec = get_format(fmt)
    if not isinstance(rgba, np.ndarray) or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"rgba must be H×W×4, got shape {getattr(rgba, 'shape', None)}")
    if rgba.dtype != np.uint8 or 0 in rgba.shape[:2]:
        raise ValueError(f"rgba must be non-empty uint8, got {rgba.dtype} shape {rgba.shape}")
    _check_levels(png_compress_level, webp_quality)
    check_fits(spec, rgba.shape[:2], str(path))
    protect = list(protect)
    for other in protect:  # before encoding: refuse early, whatever the encoder costs
        if same_file(path, Path(other)):
            raise ValueError(f"{path}: refusing to overwrite an input ({other})")
    data = encode(rgba, spec, png_compress_level=png_compress_level, webp_quality=webp_quality)
    return write_file(path, data, protect)


def _swap_in(new: Path, path: Path) -> None:
    """Put the folder ``new`` at ``path``: a symlink there is removed (never followed), an
    existing folder is renamed aside, replaced and then deleted; on failure it is put back."""
    if path.is_symlink():
        path.unlink()
    elif path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a folder; refusing to replace it")
    if not path.exists():
        os.rename(new, path)  # atomic
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
    os.rename(path, aside)  # replaces the empty folder mkdtemp made: the old one is now aside
    try:
        os.rename(new, path)
    except BaseException:
        os.rename(aside, path)
        raise
    shutil.rmtree(aside, ignore_errors=True)  # rmtree removes links, never follows them


def write_folder(
    path: str | Path, files: Iterable[tuple[str, bytes]], protect: Iterable[str | Path] = ()
) -> list[Path]:
    """Write ``files`` (``(plain file name, bytes)``) as the folder ``path``, atomically as a
    whole, and return the final paths in order.

    The files are written (``write_file``) into a unique temp folder beside ``path``, which is
    then renamed into place; an existing folder at ``path`` is replaced as a whole, a symlink
    at ``path`` is replaced (its target is never touched). On any failure, Ctrl-C included, the
    temp folder is removed and ``path`` is as it was. ``ValueError`` for a name that is not a
    plain file name, or when ``path`` holds one of ``protect`` (inputs are never deleted).
    """
    path = Path(path)
    protect = [Path(p) for p in protect]
    for other in protect:
        if not path.is_symlink() and _inside(Path(other), path):
            raise ValueError(f"{path}: refusing to replace a folder that holds an input ({other})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    names: list[str] = []
    try:
        for name, data in files:
            if Path(name).name != name or name in ("", ".", ".."):
                raise ValueError(f"{path}: {name!r} is not a plain file name")
            write_file(tmp / name, data, protect)
            names.append(name)
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; an output folder is an ordinary folder
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [path / name for name in names]


def _inside(file: Path, folder: Path) -> bool:
    try:
        return file.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False
