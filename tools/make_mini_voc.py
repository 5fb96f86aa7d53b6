"""Write a small PASCAL VOC 2012 tar and SBD tgz in the exact real formats.

The two archives stand in for ``VOCtrainval_11-May-2012.tar`` and SBD's
``benchmark.tgz`` wherever the real ones cannot be downloaded (CI, laptops,
tests).  They keep every detail the data stage reads:

* VOC: ``VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,SegmentationObject,
  Annotations,ImageSets/Segmentation/{train,val,trainval}.txt}``, palette PNG
  labels with 255 on object borders, JPEG images of different sizes.
* SBD: ``benchmark_RELEASE/dataset/{cls,inst,img,train.txt,val.txt}`` where
  ``cls/<id>.mat`` holds the MATLAB struct ``GTcls`` (``Boundaries``: 20x1
  cell of sparse logical matrices, ``Segmentation``: uint8 class map,
  ``CategoriesPresent``) and ``inst/<id>.mat`` the struct ``GTinst``.
* The real quirks: SBD train overlaps VOC val, both SBD lists overlap VOC
  train, some VOC images are in no SBD list.
* SBD annotates a few classes coarser than VOC (:data:`COARSE_CLASSES`:
  bicycle, chair, pottedplant): their masks in ``cls/<id>.mat`` are dilated
  by :data:`COARSE_RADIUS` pixels into the background, as SBD's filled-in
  bicycles and loose outlines are; every other class is drawn exactly as in
  VOC (whose 255 border band VOC adds on top).  ``inst/<id>.mat`` keeps the
  drawn instances.

Images are learnable: every class has its own colour and stripe texture plus
noise, so a small network separates the classes within a few epochs.

The output is byte-for-byte deterministic for a given seed (fixed tar
metadata, gzip mtime 0, fixed MAT header), which is why ``config/demo.yaml``
can carry the archives' md5 sums.
"""


import argparse
import gzip
import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
import scipy.ndimage
import scipy.sparse
from PIL import Image, ImageDraw

# The dataset facts are the workflow's own (scripts/common/voc.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from common.jobs import md5sum  # noqa: E402
from common.voc import IGNORE_INDEX, NUM_CLASSES, palette  # noqa: E402
# VOCtrainval_11-May-2012.tar's members carry this date; fixed so md5s are stable.
ARCHIVE_MTIME = 1336694400
MAT_HEADER_TEXT = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2011"

VOC_ARCHIVE_NAME = "VOCtrainval_mini.tar"
SBD_ARCHIVE_NAME = "benchmark_mini.tgz"

# Classes SBD outlines coarser than VOC (bicycle, chair, pottedplant) and by how much.
COARSE_CLASSES = (2, 9, 16)
COARSE_RADIUS = 3


def class_colours() -> np.ndarray:
    """A well separated RGB colour for each of the 21 classes (0 = background)."""
    levels = (40, 140, 240)
    cube = [(r, g, b) for r in levels for g in levels for b in levels]
    cube.remove((140, 140, 140))  # kept free: too close to the grey background
    return np.array([(110, 110, 100)] + cube[:20], dtype=np.float32)


@dataclass(frozen=True)
class Split:
    """Which ids belong to which list of the two archives."""

    voc_train: list[str]
    voc_val: list[str]
    sbd_train: list[str]
    sbd_val: list[str]
    unlabelled: list[str]  # JPEGImages without any segmentation (as in real VOC)

    @property
    def all_ids(self) -> list[str]:
        ids = set(self.voc_train) | set(self.voc_val) | set(self.sbd_train)
        return sorted(ids | set(self.sbd_val) | set(self.unlabelled))


def make_split(
    rng: np.random.Generator,
    voc_train: int = 40,
    voc_val: int = 30,
    sbd_only_train: int = 75,
    sbd_only_val: int = 27,
    unlabelled: int = 5,
) -> Split:
    """Draw ids and lists with the overlaps of the real VOC 2012 / SBD pair."""
    total = voc_train + voc_val + sbd_only_train + sbd_only_val + unlabelled
    numbers = rng.choice(np.arange(1, 9999), size=total, replace=False)
    years = rng.choice([2007, 2008, 2009, 2010, 2011], size=total)
    ids = [f"{y}_{n:06d}" for y, n in zip(years, numbers)]
    it = iter(ids)
    take = lambda n: [next(it) for _ in range(n)]  # noqa: E731
    vtrain, vval = take(voc_train), take(voc_val)
    strain_only, sval_only, unl = take(sbd_only_train), take(sbd_only_val), take(unlabelled)
    # SBD train reaches into VOC val (why trainaug must subtract val), and both
    # SBD lists reach into VOC train (where VOC's own label must win).
    sbd_train = strain_only + vval[:10] + vtrain[:15]
    sbd_val = sval_only + vval[10:18] + vtrain[15:20]
    return Split(
        voc_train=sorted(vtrain),
        voc_val=sorted(vval),
        sbd_train=sorted(sbd_train),
        sbd_val=sorted(sbd_val),
        unlabelled=sorted(unl),
    )


def draw_scene(
    rng: np.random.Generator, classes: list[int], height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (RGB uint8 image, class map, instance map) for one picture."""
    colours = class_colours()
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Background: a smooth low-contrast field, unlike any object texture.
    # float32 scalars: numpy 2 (NEP 50) would compute a float32 grid with a float64
    # scalar in float64, numpy 1 in float32; the archives' bytes must not change
    phase = rng.uniform(0, 2 * np.pi, size=2).astype(np.float32)
    image = colours[0] + 12 * np.sin(xx / 23.0 + phase[0])[..., None] * np.cos(
        yy / 17.0 + phase[1]
    )[..., None]
    label = np.zeros((height, width), np.uint8)
    instance = np.zeros((height, width), np.uint8)
    for number, cls in enumerate(classes, start=1):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        h = int(rng.integers(height // 3, height * 3 // 4))
        w = int(rng.integers(width // 3, width * 3 // 4))
        y0 = int(rng.integers(0, height - h))
        x0 = int(rng.integers(0, width - w))
        shape = int(rng.integers(3))
        if shape == 0:
            draw.ellipse([x0, y0, x0 + w, y0 + h], fill=1)
        elif shape == 1:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=1)
        else:
            draw.polygon([(x0 + w // 2, y0), (x0, y0 + h), (x0 + w, y0 + h)], fill=1)
        mask = np.asarray(canvas, dtype=bool)
        angle = np.pi * cls / 20.0
        period = 4.0 + (cls % 5) * 2.0
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        stripes = 30 * np.sin(2 * np.pi * (xx * cos + yy * sin) / period)
        image[mask] = colours[cls] + stripes[mask][:, None]
        label[mask] = cls
        instance[mask] = number
    image += rng.normal(0, 10, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label, instance


def border_band(label: np.ndarray, width: int = 3) -> np.ndarray:
    """Pixels within ``width`` of a change of label: VOC marks them 255."""
    dilated = scipy.ndimage.grey_dilation(label, size=(width, width))
    eroded = scipy.ndimage.grey_erosion(label, size=(width, width))
    return dilated != eroded


def thin_boundary(mask: np.ndarray) -> np.ndarray:
    """The outline of a binary mask, one pixel wide (SBD's ``Boundaries``)."""
    return mask & ~scipy.ndimage.binary_erosion(mask, border_value=0)


def coarsen(label: np.ndarray, classes=COARSE_CLASSES, radius: int = COARSE_RADIUS) -> np.ndarray:
    """SBD's version of a class map: ``classes`` dilated by ``radius`` pixels into the background.

    Dilation (a disk of ``radius``) claims only background pixels, so other
    objects keep their pixels; classes are dilated in the order given.
    """
    coarse = label.copy()
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = yy**2 + xx**2 <= radius**2
    for cls in classes:
        mask = label == cls
        if mask.any():
            grown = scipy.ndimage.binary_dilation(mask, structure=disk)
            coarse[grown & (coarse == 0)] = cls
    return coarse


def png_bytes(array: np.ndarray, palette: list[int] | None = None) -> bytes:
    image = Image.fromarray(array)  # uint8 2-D: mode L; a palette makes it P
    if palette:
        image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=90)  # uint8 HxWx3: RGB
    return buffer.getvalue()


def mat_bytes(variables: dict) -> bytes:
    """A compressed MAT 5 file (MATLAB's default), with a fixed header."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, do_compression=True, oned_as="column")
    data = bytearray(buffer.getvalue())
    data[:116] = MAT_HEADER_TEXT.ljust(116, b" ")
    return bytes(data)


def _struct(fields: dict) -> np.ndarray:
    """A 1x1 MATLAB struct as scipy writes and reads it."""
    struct = np.empty((1, 1), dtype=[(name, object) for name in fields])
    for name, value in fields.items():
        struct[0, 0][name] = value
    return struct


def _cell(items: list) -> np.ndarray:
    cell = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cell[i, 0] = item
    return cell


def sbd_cls_mat(segmentation: np.ndarray) -> bytes:
    """``cls/<id>.mat`` exactly as SBD stores it: the struct ``GTcls``."""
    segmentation = np.asarray(segmentation, dtype=np.uint8)
    boundaries = [
        scipy.sparse.csc_matrix(thin_boundary(segmentation == cls)) for cls in range(1, 21)
    ]
    present = np.array([c for c in np.unique(segmentation) if 0 < c < 21], dtype=np.uint8)
    gtcls = _struct(
        {
            "Boundaries": _cell(boundaries),
            "Segmentation": segmentation,
            "CategoriesPresent": present.reshape(-1, 1),
        }
    )
    return mat_bytes({"GTcls": gtcls})


def sbd_inst_mat(instance: np.ndarray, classes: list[int]) -> bytes:
    """``inst/<id>.mat``: the struct ``GTinst`` (instance map per object)."""
    visible = [n for n in range(1, len(classes) + 1) if (instance == n).any()]
    gtinst = _struct(
        {
            "Segmentation": instance.astype(np.uint8),
            "Boundaries": _cell(
                [scipy.sparse.csc_matrix(thin_boundary(instance == n)) for n in visible]
            ),
            "Categories": np.array([classes[n - 1] for n in visible], np.uint8).reshape(-1, 1),
        }
    )
    return mat_bytes({"GTinst": gtinst})


def voc_annotation_xml(image_id: str, height: int, width: int) -> bytes:
    return (
        "<annotation>\n"
        "\t<folder>VOC2012</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n"
        "\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>1</segmented>\n"
        "</annotation>\n"
    ).encode()


def list_bytes(ids: list[str]) -> bytes:
    return "".join(f"{i}\n" for i in ids).encode()


def _tarinfo(name: str, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = ARCHIVE_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


def write_tar(path: Path, files: dict[str, bytes], gzipped: bool) -> None:
    """Write ``files`` (member name -> bytes) deterministically, atomically."""
    directories = set()
    for name in files:
        parts = name.split("/")[:-1]
        directories.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as raw:
        stream = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") if gzipped else raw
        with tarfile.open(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name in sorted(directories):
                tar.addfile(_tarinfo(name + "/", directory=True))
            for name in sorted(files):
                tar.addfile(_tarinfo(name, len(files[name])), io.BytesIO(files[name]))
        if gzipped:
            stream.close()
    os.replace(tmp, path)


def assign_classes(rng: np.random.Generator, ids: list[str]) -> dict[str, list[int]]:
    """1-3 object classes per image, cycling so that every class appears often."""
    cycle: list[int] = []
    classes = {}
    for image_id in ids:
        count = int(rng.integers(1, 4))
        picked: list[int] = []
        while len(picked) < count:
            if not cycle:
                cycle = list(rng.permutation(np.arange(1, 21)))
            cls = int(cycle.pop())
            if cls not in picked:
                picked.append(cls)
        classes[image_id] = picked
    return classes


def build_archives(out_dir: Path, seed: int = 0) -> dict[str, str]:
    """Write both mini archives into ``out_dir``; return {file name: md5}."""
    rng = np.random.default_rng(seed)
    split = make_split(rng)
    colours = palette()
    voc_labelled = set(split.voc_train) | set(split.voc_val)
    sbd_ids = set(split.sbd_train) | set(split.sbd_val)
    classes = assign_classes(rng, split.all_ids)

    voc_root, sbd_root = "VOCdevkit/VOC2012", "benchmark_RELEASE/dataset"
    voc: dict[str, bytes] = {}
    sbd: dict[str, bytes] = {}
    for image_id in split.all_ids:
        height, width = int(rng.integers(72, 129)), int(rng.integers(96, 161))
        image, label, instance = draw_scene(rng, classes[image_id], height, width)
        jpeg = jpeg_bytes(image)
        voc[f"{voc_root}/JPEGImages/{image_id}.jpg"] = jpeg
        voc[f"{voc_root}/Annotations/{image_id}.xml"] = voc_annotation_xml(
            image_id, height, width
        )
        if image_id in voc_labelled:
            band = border_band(label)
            voc[f"{voc_root}/SegmentationClass/{image_id}.png"] = png_bytes(
                np.where(band, IGNORE_INDEX, label).astype(np.uint8), colours
            )
            voc[f"{voc_root}/SegmentationObject/{image_id}.png"] = png_bytes(
                np.where(band, IGNORE_INDEX, instance).astype(np.uint8), colours
            )
        if image_id in sbd_ids:
            sbd[f"{sbd_root}/img/{image_id}.jpg"] = jpeg
            sbd[f"{sbd_root}/cls/{image_id}.mat"] = sbd_cls_mat(coarsen(label))
            sbd[f"{sbd_root}/inst/{image_id}.mat"] = sbd_inst_mat(instance, classes[image_id])

    segmentation_sets = f"{voc_root}/ImageSets/Segmentation"
    voc[f"{segmentation_sets}/train.txt"] = list_bytes(split.voc_train)
    voc[f"{segmentation_sets}/val.txt"] = list_bytes(split.voc_val)
    voc[f"{segmentation_sets}/trainval.txt"] = list_bytes(sorted(voc_labelled))
    sbd[f"{sbd_root}/train.txt"] = list_bytes(split.sbd_train)
    sbd[f"{sbd_root}/val.txt"] = list_bytes(split.sbd_val)
    sbd["benchmark_RELEASE/README"] = b"Semantic Boundaries Dataset (mini, generated)\n"

    out_dir.mkdir(parents=True, exist_ok=True)
    write_tar(out_dir / VOC_ARCHIVE_NAME, voc, gzipped=False)
    write_tar(out_dir / SBD_ARCHIVE_NAME, sbd, gzipped=True)
    return {name: md5sum(out_dir / name) for name in (VOC_ARCHIVE_NAME, SBD_ARCHIVE_NAME)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("resources/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name, md5 in build_archives(args.out, args.seed).items():
        print(f"{md5}  {args.out / name}")


if __name__ == "__main__":
    main()
