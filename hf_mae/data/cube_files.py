"""Hyperspectral cubes from the user's files: ``.npy``, ``.mat`` and ENVI (``.hdr`` + binary), band axis explicit.

``read_cube(path, band_axis=...)`` returns ``(cube, metadata)`` with ``cube`` float32 (bands, H, W). For
``.npy``/``.mat`` the caller states which axis holds the bands (``band_axis`` 0, 1, 2 or -1): a 3D shape never
says it by itself (a 100 x 100 x 100 cube, or 12 bands in a 12 x 12 scene), so it is never guessed. For ENVI
the header states it (``interleave``: ``bsq`` = (bands, lines, samples), ``bil`` = (lines, bands, samples),
``bip`` = (lines, samples, bands)); a ``band_axis`` given with an ENVI file must agree with the header.

ENVI support (``read_envi``): header keys ``samples``, ``lines``, ``bands``, ``data type`` (1 uint8, 2 int16,
3 int32, 4 float32, 5 float64, 12 uint16, 13 uint32, 14 int64, 15 uint64; complex types refused),
``interleave``, ``byte order`` (0 little-endian, 1 big-endian), ``header offset`` (bytes skipped),
``wavelength`` and ``wavelength units``, ``data ignore value``. The binary file is the header's name without
``.hdr`` or with one of ``ENVI_DATA_SUFFIXES``; pass ``data_file`` otherwise. The file is memory-mapped and
its size checked against the header.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "scene.npy")
    >>> np.save(path, np.zeros((20, 30, 6), np.float32))          # (H, W, bands)
    >>> cube, meta = read_cube(path, band_axis=-1)
    >>> cube.shape, meta["band_axis"]
    ((6, 20, 30), -1)
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .hyperspectral import load_array

ENVI_DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8", 15: "u8"}
ENVI_INTERLEAVE_AXIS = {"bsq": 0, "bil": 1, "bip": 2}       # where the bands are in the file's array
ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".raw", ".bsq", ".bil", ".bip", ".sli")


def parse_envi_header(path: str | Path) -> dict[str, str | list[str]]:
    """The ``key = value`` pairs of an ENVI header, keys lower-cased; ``{a, b, ...}`` values become lists.

    Example:
        >>> import tempfile, os
        >>> hdr = os.path.join(tempfile.mkdtemp(), "x.hdr")
        >>> _ = open(hdr, "w").write("ENVI\\nsamples = 4\\nwavelength = {\\n 400.5, 410 }\\n")
        >>> parse_envi_header(hdr)
        {'samples': '4', 'wavelength': ['400.5', '410']}
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ENVI header {str(path)!r} does not exist.")
    text = path.read_text(errors="replace")
    if not text.lstrip().startswith("ENVI"):
        raise ValueError(f"{path}: not an ENVI header (the first word must be 'ENVI').")
    header: dict[str, str | list[str]] = {}
    for match in re.finditer(r"^\s*([^=\n]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, flags=re.MULTILINE):
        key, value = match.group(1).strip().lower(), match.group(2).strip()
        if value.startswith("{"):
            header[key] = [v.strip() for v in value[1:-1].split(",") if v.strip()]
        else:
            header[key] = value
    return header


def _header_int(header: dict, key: str, path: Path, default: int | None = None) -> int:
    if key not in header:
        if default is not None:
            return default
        raise ValueError(f"{path}: the ENVI header has no `{key}`; expected samples, lines, bands, data type, interleave.")
    try:
        return int(str(header[key]))
    except ValueError:
        raise ValueError(f"{path}: ENVI `{key}` must be an integer, got {header[key]!r}.") from None


def _envi_data_file(header_path: Path, data_file) -> Path:
    if data_file is not None:
        data_path = Path(data_file)
        if not data_path.is_file():
            raise ValueError(f"ENVI data file {str(data_path)!r} does not exist.")
        return data_path
    stem = header_path.with_suffix("")
    for suffix in ENVI_DATA_SUFFIXES:
        candidate = Path(f"{stem}{suffix}")
        if candidate.is_file() and candidate != header_path:
            return candidate
    raise ValueError(f"{header_path}: no binary file next to it ({stem.name} + one of {list(ENVI_DATA_SUFFIXES)}); "
                     f"pass `data_file`.")


def read_envi(header_path: str | Path, data_file: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """An ENVI image as float32 (bands, lines, samples) and its metadata (see the module docstring).

    Metadata: ``wavelengths`` (list or None), ``wavelength_unit``, ``interleave``, ``ignore_value`` (or None),
    ``source`` (the data file).
    """
    header_path = Path(header_path)
    header = parse_envi_header(header_path)
    samples, lines, bands = (_header_int(header, k, header_path) for k in ("samples", "lines", "bands"))
    code = _header_int(header, "data type", header_path)
    if code not in ENVI_DTYPES:
        raise ValueError(f"{header_path}: ENVI `data type` {code} is not supported; expected one of "
                         f"{sorted(ENVI_DTYPES)} (complex types 6 and 9 are not spectra).")
    order = _header_int(header, "byte order", header_path, default=0)
    if order not in (0, 1):
        raise ValueError(f"{header_path}: ENVI `byte order` must be 0 (little-endian) or 1 (big-endian), got {order}.")
    interleave = str(header.get("interleave", "")).lower()
    if interleave not in ENVI_INTERLEAVE_AXIS:
        raise ValueError(f"{header_path}: ENVI `interleave` must be one of {list(ENVI_INTERLEAVE_AXIS)}, got "
                         f"{interleave!r}.")
    offset = _header_int(header, "header offset", header_path, default=0)
    data_path = _envi_data_file(header_path, data_file)
    dtype = np.dtype(("<" if order == 0 else ">") + ENVI_DTYPES[code])
    shape = {"bsq": (bands, lines, samples), "bil": (lines, bands, samples), "bip": (lines, samples, bands)}[interleave]
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    size = data_path.stat().st_size
    if size < expected:
        raise ValueError(f"{data_path}: {size} bytes, but the header ({bands} bands x {lines} lines x {samples} "
                         f"samples of {dtype.name}, offset {offset}) needs {expected}.")
    raw = np.memmap(data_path, dtype=dtype, mode="r", offset=offset, shape=shape)
    cube = np.moveaxis(np.asarray(raw, dtype=np.float32), ENVI_INTERLEAVE_AXIS[interleave], 0)
    wavelengths = header.get("wavelength")
    library = "spectral library" in str(header.get("file type", "")).lower()
    if isinstance(wavelengths, list):  # a spectral library stores one spectrum per line: points are samples
        wavelengths = [float(w) for w in wavelengths]
        if len(wavelengths) != (samples if library else bands):
            raise ValueError(f"{header_path}: `wavelength` lists {len(wavelengths)} values for "
                             f"{samples if library else bands} {'samples' if library else 'bands'}.")
    ignore = header.get("data ignore value")
    names = header.get("spectra names")
    return np.ascontiguousarray(cube), {
        "spectral_library": library, "spectra_names": names if isinstance(names, list) else None,
        "wavelengths": wavelengths if isinstance(wavelengths, list) else None,
        "wavelength_unit": header.get("wavelength units"), "interleave": interleave,
        "ignore_value": None if ignore is None else float(str(ignore)), "source": str(data_path),
    }


def read_spectral_library(header_path: str | Path, data_file: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """An ENVI spectral library (``file type = ENVI Spectral Library``): spectra (lines, samples) float32, one
    per line, and the metadata of ``read_envi`` (``wavelengths`` per sample, ``spectra_names`` per line)."""
    cube, meta = read_envi(header_path, data_file)
    if not meta["spectral_library"] or cube.shape[0] != 1:
        raise ValueError(f"{header_path}: not an ENVI spectral library with 1 band (file type "
                         f"{'library' if meta['spectral_library'] else 'image'}, {cube.shape[0]} bands); use read_cube.")
    return cube[0], meta


def read_cube(path: str | Path, band_axis: int | None = None, *, mat_key: str | None = None,
              data_file: str | Path | None = None) -> tuple[np.ndarray, dict]:
    """A hyperspectral cube as float32 (bands, H, W) and metadata; ``band_axis`` required for .npy/.mat.

    ``path`` is a ``.npy``/``.mat`` array (``mat_key`` names the variable when the file holds several) or an
    ENVI header ``.hdr``. NaN/infinite values are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Cube file {str(path)!r} does not exist.")
    if path.suffix.lower() == ".hdr":
        cube, meta = read_envi(path, data_file)
        header_axis = {"bsq": 0, "bil": 1, "bip": 2}[meta["interleave"]]
        if band_axis is not None and band_axis % 3 != header_axis:
            raise ValueError(f"{path}: `band_axis`={band_axis} contradicts the header's interleave "
                             f"{meta['interleave']!r} (bands on axis {header_axis}); leave `band_axis` unset for ENVI.")
        meta["band_axis"] = header_axis
    else:
        if band_axis is None:
            raise ValueError(f"{path}: pass `band_axis` (0, 1 or 2/-1; `--band_axis` on the command line): which axis "
                             f"of the array holds the bands is never guessed.")
        array = load_array(path, mat_key)
        if isinstance(band_axis, bool) or not isinstance(band_axis, int) or not -3 <= band_axis <= 2:
            raise ValueError(f"`band_axis` must be 0, 1, 2 or -1, got {band_axis!r}.")
        if not np.issubdtype(array.dtype, np.number):
            raise ValueError(f"{path}: expected a numeric cube, got dtype {array.dtype}.")
        cube = np.ascontiguousarray(np.moveaxis(array, band_axis, 0), dtype=np.float32)
        meta = {"wavelengths": None, "wavelength_unit": None, "interleave": None, "ignore_value": None,
                "source": str(path), "band_axis": band_axis}
    if not np.isfinite(cube).all():
        raise ValueError(f"{path}: the cube holds {int((~np.isfinite(cube)).sum())} NaN or infinite values; "
                         f"clean or mask them first.")
    meta["shape"] = list(cube.shape)
    return cube, meta
