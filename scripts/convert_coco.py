"""COCO val2017 as a VOC-format segmentation set: images, class-index labels, an id list.

Reads ``annotations/instances_val2017.json`` from the annotations zip and,
for every image the conversion keeps (``common/coco.py``: the 20 VOC
categories, torchvision's masks, 255 where instances overlap, images whose
VOC objects' areas sum to <= 1000 dropped), writes

* ``output.images/<id>.jpg``: the JPEG, byte for byte, from the images zip;
* ``output.labels/<id>.png``: a single-channel uint8 PNG of VOC class indices;
* ``output.list``: the kept ids (12 digits), sorted, one a line.

Both archives' md5s are checked first (a null md5 is logged as unchecked).
Members are read by name, never extracted wholesale, so a crafted archive
cannot write anywhere.  Everything is written under temporary names beside
the outputs and renamed into place only once all of it is there: an error
leaves no output behind.  With the official md5s configured, the number of
kept images is also checked against ``params.expected_images`` (if given).
"""

import io
import logging
import os
import shutil
import time
import zipfile
import zlib
from pathlib import Path

from PIL import Image

from common.coco import (
    ANNOTATIONS_MD5,
    IMAGES_MD5,
    INSTANCES_MEMBER,
    CocoImage,
    ConversionCounts,
    parse_instances_bytes,
    select_images,
    voc_label,
)
from common.archives import ArchiveError, check_md5
from common.jobs import start_log
from common.labels import write_label_png

log = logging.getLogger("convert_coco")


def open_zip(path: Path) -> zipfile.ZipFile:
    """``path`` as a zip archive, or an :class:`ArchiveError` naming it."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ArchiveError(f"{path}: is not a readable zip archive ({error})") from error


def read_member(archive: zipfile.ZipFile, path: Path, name: str) -> bytes:
    """The bytes of member ``name``; a missing or corrupt one is named with the archive."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ArchiveError(f"{path}: has no member {name}; is it the right archive?") from None
    try:
        return archive.read(info)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError) as error:
        raise ArchiveError(f"{path}: member {name} cannot be read ({error})") from error


def check_jpeg(data: bytes, image: CocoImage, path: Path) -> None:
    """The member must be a JPEG of the size the annotations give."""
    try:
        with Image.open(io.BytesIO(data)) as jpeg:
            kind, size = jpeg.format, jpeg.size
    except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
        raise ArchiveError(f"{path}: member {image.member} is not an image ({error})") from error
    if kind != "JPEG":
        raise ArchiveError(f"{path}: member {image.member} is a {kind}, not a JPEG")
    if size != (image.width, image.height):
        raise ArchiveError(
            f"{path}: member {image.member} is {size[0]}x{size[1]}, "
            f"but the annotations say {image.width}x{image.height}"
        )


def _temporary(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.tmp-{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def convert(
    images_zip: Path,
    annotations_zip: Path,
    out_images: Path,
    out_labels: Path,
    out_list: Path,
    expected_images: int | None = None,
) -> ConversionCounts:
    """Write the kept images, their labels and the id list; return the counts.

    With ``expected_images``, any other number of kept images is an error
    (raised before anything is written).  The outputs appear only when
    everything was written.
    """
    images_zip, annotations_zip = Path(images_zip), Path(annotations_zip)
    outputs = [Path(out_images), Path(out_labels), Path(out_list)]
    temporary = [_temporary(path) for path in outputs]
    for path in temporary:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove(path)
    tmp_images, tmp_labels, tmp_list = temporary
    try:
        with open_zip(annotations_zip) as archive:
            raw = read_member(archive, annotations_zip, INSTANCES_MEMBER)
        instances = parse_instances_bytes(raw, f"{annotations_zip}:{INSTANCES_MEMBER}")
        kept, counts = select_images(instances)
        if expected_images is not None and counts.kept != expected_images:
            raise ArchiveError(
                f"{instances.source}: keeps {counts.kept} of its {counts.images} images, but the "
                f"official val2017 gives {expected_images}: the conversion or the archives changed"
            )
        tmp_images.mkdir()
        tmp_labels.mkdir()
        with open_zip(images_zip) as archive:
            names = set(archive.namelist())
            missing = [image.member for image, _ in kept if image.member not in names]
            if missing:
                raise ArchiveError(
                    f"{images_zip}: has no member {missing[0]} ({len(missing)} of the "
                    f"{len(kept)} kept images are missing); is it the right archive?"
                )
            for image, annotations in kept:
                data = read_member(archive, images_zip, image.member)
                check_jpeg(data, image, images_zip)
                (tmp_images / f"{image.stem}.jpg").write_bytes(data)
                label, overlap = voc_label(image, annotations, instances.source)
                counts.overlap_pixels += overlap
                write_label_png(tmp_labels / f"{image.stem}.png", label)
        tmp_list.write_text("".join(f"{image.stem}\n" for image, _ in kept))
        for tmp, dest in zip(temporary, outputs):
            _remove(dest)
            os.replace(tmp, dest)
    finally:
        for path in temporary:
            _remove(path)
    return counts


def main(snakemake) -> None:
    start_log(snakemake)
    start = time.perf_counter()
    images_zip, annotations_zip = Path(snakemake.input.images), Path(snakemake.input.annotations)
    params = snakemake.params
    images_key, annotations_key = params.md5_keys
    check_md5(images_zip, params.md5_images, images_key)
    check_md5(annotations_zip, params.md5_annotations, annotations_key)
    # The kept-image count is a constant of the official archives only.
    official_images = (params.md5_images or "").lower() == IMAGES_MD5
    official_annotations = (params.md5_annotations or "").lower() == ANNOTATIONS_MD5
    official = official_images and official_annotations
    expected = params.expected_images if official else None
    if not official:
        log.info("kept-image count not checked: not the official archives' md5s")
    elif expected is None:
        log.info("kept-image count not checked: no expected_images given")
    counts = convert(
        images_zip,
        annotations_zip,
        Path(snakemake.output.images),
        Path(snakemake.output.labels),
        Path(snakemake.output.list),
        expected,
    )
    log.info(
        "%d images in the JSON (%d annotations): kept %d; dropped %d without a VOC object "
        "and %d whose VOC objects' areas sum to <= 1000",
        counts.images, counts.annotations, counts.kept, counts.dropped_no_voc, counts.dropped_small,
    )  # fmt: skip
    log.info(
        "used %d VOC-category annotations (%d of them crowd); %d pixels set to 255 where "
        "instances overlap",
        counts.annotations_used, counts.crowd_used, counts.overlap_pixels,
    )  # fmt: skip
    if expected is not None:
        log.info("kept-image count matches the official archives' %d", expected)
    log.info("done in %.1f s", time.perf_counter() - start)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
