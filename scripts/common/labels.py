"""Class-index label maps: read, check and write them (convert_sbd, compare_annotations,
convert_coco).

* VOC's ``SegmentationClass`` PNGs (palette or grey);
* SBD's ``cls/<id>.mat``: ``GTcls.Segmentation``;
* every value checked to be a class index (255 also allowed for VOC), else an
  error naming the file and the value;
* written as single-channel uint8 PNGs.

Reading SBD: ``scipy.io.loadmat`` builds all twenty sparse ``Boundaries``
matrices of every file only to drop them; :func:`read_gtcls_segmentation`
walks the MAT 5 structure and decodes just the ``Segmentation`` field.  It
knows the layouts MATLAB and ``scipy.io.savemat`` write (either byte order,
compressed or not, numbers stored in a narrower type than their class, struct
arrays with more fields); :func:`read_sbd_label` reads a file whose structure
it does not know with ``scipy.io.loadmat`` instead, and says so.
"""

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from common.voc import IGNORE_INDEX, NUM_CLASSES


class LabelError(RuntimeError):
    """A label file that is missing, unreadable, or holds a value that is no class."""


class UnknownMatLayout(LabelError):
    """The fast MAT 5 reader met a structure it does not decode (scipy's loadmat may)."""


# --- MAT 5 reading ---------------------------------------------------------
# Data types of MAT 5 elements (MATLAB's "MAT-File Format", table 1-1).
_MI_DTYPES = {
    1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4",
    7: "f4", 9: "f8", 12: "i8", 13: "u8",
}  # fmt: skip
_MI_MATRIX, _MI_COMPRESSED = 14, 15
# MATLAB array classes of numeric matrices (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15).
_MX_DTYPES = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4", 14: "i8", 15: "u8"}
_MX_STRUCT = 2
_MX_COMPLEX_FLAG = 0x0800


class _Reader:
    """Sequential reader of MAT 5 data elements in one byte buffer."""

    def __init__(self, data: bytes, endian: str, path: Path):
        self.data, self.endian, self.path = data, endian, path

    def tag(self, pos: int) -> tuple[int, int, int, int]:
        """Return (type, size, start of data, start of the next element)."""
        first, second = struct.unpack_from(self.endian + "II", self.data, pos)
        if first >> 16:  # small data element: size and type share the first word
            return first & 0xFFFF, first >> 16, pos + 4, pos + 8
        if first == _MI_COMPRESSED:
            return first, second, pos + 8, pos + 8 + second
        return first, second, pos + 8, pos + 8 + ((second + 7) & ~7)

    def values(self, pos: int) -> tuple[np.ndarray, int]:
        mtype, size, start, end = self.tag(pos)
        if mtype not in _MI_DTYPES:
            raise UnknownMatLayout(f"{self.path}: unexpected MAT data type {mtype}")
        dtype = np.dtype(_MI_DTYPES[mtype]).newbyteorder(self.endian)
        return np.frombuffer(self.data, dtype, size // dtype.itemsize, start), end

    def matrix_header(self, pos: int) -> tuple[int, np.ndarray, str, int]:
        """Parse a miMATRIX's flags, dimensions and name; return the class too."""
        flags, pos = self.values(pos)
        dims, pos = self.values(pos)
        name, pos = self.values(pos)
        if int(flags[0]) & _MX_COMPLEX_FLAG:
            raise UnknownMatLayout(f"{self.path}: complex MATLAB array")
        return int(flags[0]) & 0xFF, dims, name.tobytes().decode("ascii"), pos


def read_gtcls_segmentation(path: Path, variable: str = "GTcls", field: str = "Segmentation") -> np.ndarray:
    """``loadmat(path)[variable][0][field][0]`` without loadmat.

    Like loadmat (``mat_dtype=False``), the array has the type its values are
    stored in, in native byte order: MATLAB stores a double array of small
    integers as uint8, and the label checks need only the values.
    """
    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 128 or raw[126:128] not in (b"IM", b"MI"):
        raise UnknownMatLayout(f"{path}: not a MAT 5 file")
    reader = _Reader(raw, "<" if raw[126:128] == b"IM" else ">", path)
    pos = 128
    while pos + 8 <= len(raw):
        mtype, size, start, end = reader.tag(pos)
        element = reader
        if mtype == _MI_COMPRESSED:
            try:
                element = _Reader(zlib.decompress(raw[start : start + size]), reader.endian, path)
            except zlib.error as error:
                raise LabelError(f"{path}: corrupt compressed MAT data ({error})") from error
            mtype, size, start, _ = element.tag(0)
        if mtype == _MI_MATRIX:
            mx_class, dims, name, body = element.matrix_header(start)
            if name == variable:
                return _struct_field(element, mx_class, dims, body, field)
        pos = end
    raise LabelError(f"{path}: no variable {variable!r}")


def _struct_field(reader: _Reader, mx_class: int, dims: np.ndarray, pos: int, field: str) -> np.ndarray:
    if mx_class != _MX_STRUCT or int(np.prod(dims)) < 1:
        raise UnknownMatLayout(f"{reader.path}: {field!r} is not in a MATLAB struct")
    name_length, pos = reader.values(pos)
    names, pos = reader.values(pos)
    width = int(name_length[0])
    fields = [names[i : i + width].tobytes().split(b"\0")[0].decode("ascii") for i in range(0, len(names), width)]
    if field not in fields:
        raise LabelError(f"{reader.path}: struct has no field {field!r} (fields: {fields})")
    for name in fields:  # fields of the first struct element, in order
        _, _, start, end = reader.tag(pos)
        if name == field:
            mx_class, dims, _, body = reader.matrix_header(start)
            if mx_class not in _MX_DTYPES or len(dims) != 2:
                raise UnknownMatLayout(f"{reader.path}: {field!r} is not a 2-D numeric matrix")
            values, _ = reader.values(body)
            array = values.reshape([int(d) for d in dims], order="F")
            # C order now: PIL would otherwise copy a column-major array the slow way.
            return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
        pos = end
    raise AssertionError("unreachable")


def loadmat_segmentation(path: Path, variable: str = "GTcls", field: str = "Segmentation") -> np.ndarray:
    """The same field through ``scipy.io.loadmat`` (slower, knows every MAT 5 layout)."""
    import scipy.io
    import scipy.sparse

    try:
        value = scipy.io.loadmat(path, variable_names=[variable])[variable][field].flat[0]
    except Exception as error:  # scipy's MatReadError, KeyError, NotImplementedError (v7.3), ...
        raise LabelError(f"{path}: cannot read {variable}.{field} ({type(error).__name__}: {error})") from error
    if scipy.sparse.issparse(value):
        value = value.toarray()
    if not isinstance(value, np.ndarray) or value.ndim != 2 or not np.issubdtype(value.dtype, np.number):
        raise LabelError(f"{path}: {variable}.{field} is not a 2-D numeric matrix")
    if np.iscomplexobj(value):
        raise LabelError(f"{path}: {variable}.{field} is complex")
    return value


def read_sbd_label(path: Path) -> tuple[np.ndarray, bool]:
    """``GTcls.Segmentation`` of ``path``, and whether the fast reader had to hand over to loadmat."""
    try:
        return read_gtcls_segmentation(path), False
    except UnknownMatLayout:
        return loadmat_segmentation(path), True
    except (struct.error, ValueError, IndexError, UnicodeDecodeError):
        # a layout the walk misreads (a size that runs past the data, ...)
        return loadmat_segmentation(path), True


# --- checking and writing ----------------------------------------------------
def check_label(label: np.ndarray, path: Path, allow_ignore: bool) -> np.ndarray:
    """Return ``label`` as uint8 if every value is a class index (or 255 if allowed)."""
    if label.dtype == np.uint8 and label.max(initial=0) < NUM_CLASSES:
        return label  # the common case, without a histogram
    if label.dtype == np.uint8:  # a histogram is much cheaper than np.unique
        values = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    else:
        values = np.unique(label)
    ok = (values >= 0) & (values < NUM_CLASSES) & (values == np.round(values))
    if allow_ignore:
        ok |= values == IGNORE_INDEX
    if not ok.all():
        raise LabelError(
            f"{path}: label value {values[~ok][0]} is outside 0-{NUM_CLASSES - 1}"
            + (f" and {IGNORE_INDEX}" if allow_ignore else "")
        )
    return label.astype(np.uint8, copy=False)


def read_voc_label(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise LabelError(f"{path}: expected a palette or grey PNG, found mode {image.mode}")
        return np.asarray(image)


def write_label_png(path: Path, label: np.ndarray) -> None:
    # zlib's run-length strategy suits label maps: about 3x faster than PIL's
    # default and smaller files; the pixels are the same.
    # a uint8 2-D array is a grey ("L") image (Pillow 13 drops fromarray's mode argument)
    image = Image.fromarray(label.astype(np.uint8, copy=False))
    image.save(path, format="PNG", compress_level=1, compress_type=3)
