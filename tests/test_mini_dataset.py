"""The generated mini archives have the real formats and the real quirks."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import yaml
from conftest import REPO, read_ids
from PIL import Image

from make_mini_coco import build_coco_archives
from make_mini_custom import build_custom_archive
from make_mini_voc import build_archives


def test_generator_is_deterministic_and_matches_demo_config(mini_archives, tmp_path):
    again = {**build_archives(tmp_path, seed=0), **build_coco_archives(tmp_path, seed=0),
             **build_custom_archive(tmp_path, seed=0)}  # fmt: skip
    assert again == mini_archives.md5s
    demo = yaml.safe_load((REPO / "config/demo.yaml").read_text())
    for source in ("voc", "sbd", "coco_images", "coco_annotations"):
        archive = getattr(mini_archives, source)
        assert demo["data"][source]["md5"] == mini_archives.md5s[archive.name], source
        assert demo["data"][source]["archive"].endswith(archive.name), source
    shapes = demo["datasets"]["shapes"]
    assert shapes["md5"] == mini_archives.md5s[mini_archives.custom.name]
    assert shapes["archive"].endswith(mini_archives.custom.name)


@pytest.mark.parametrize("coretype", ["Prescott", "Haswell", "SkylakeX"])
def test_generators_write_the_same_bytes_whatever_blas_kernel_the_cpu_gets(mini_archives, tmp_path, coretype):
    # OpenBLAS picks its kernels by CPU (OPENBLAS_CORETYPE forces one); a dot product
    # summed in another order once changed a COCO area's last digit, and with it the md5
    script = (
        "import sys; from pathlib import Path; sys.path[:0] = ['tools', 'scripts']\n"
        "from make_mini_coco import build_coco_archives; from make_mini_voc import build_archives\n"
        "from make_mini_custom import build_custom_archive\n"
        "out = Path(sys.argv[1])\n"
        "md5s = {**build_archives(out, seed=0), **build_coco_archives(out, seed=0), **build_custom_archive(out, seed=0)}\n"
        "print(sorted(md5s.items()))"
    )
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype}
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(sorted(mini_archives.md5s.items()))


def test_another_seed_gives_other_archives(mini_archives, tmp_path):
    assert build_archives(tmp_path, seed=1) != mini_archives.md5s


def test_voc_tar_has_the_real_layout(mini_archives):
    with tarfile.open(mini_archives.voc) as tar:
        names = set(tar.getnames())
    root = "VOCdevkit/VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations"):
        assert any(n.startswith(f"{root}/{folder}/") for n in names), folder
    for split in ("train", "val", "trainval"):
        assert f"{root}/ImageSets/Segmentation/{split}.txt" in names


def test_sbd_tgz_has_the_real_layout(mini_archives):
    with tarfile.open(mini_archives.sbd, "r:gz") as tar:
        names = set(tar.getnames())
    root = "benchmark_RELEASE/dataset"
    for folder in ("cls", "inst", "img"):
        assert any(n.startswith(f"{root}/{folder}/") for n in names), folder
    assert {f"{root}/train.txt", f"{root}/val.txt"} <= names


def test_sbd_cls_mat_holds_gtcls_struct(extracted):
    for path in sorted(extracted.sbd_cls.glob("*.mat"))[:10]:
        gtcls = scipy.io.loadmat(path)["GTcls"]
        assert gtcls.dtype.names == ("Boundaries", "Segmentation", "CategoriesPresent")
        segmentation = gtcls[0]["Segmentation"][0]
        assert segmentation.dtype == np.uint8 and segmentation.ndim == 2
        boundaries = gtcls[0]["Boundaries"][0]
        assert boundaries.shape == (20, 1)
        assert all(scipy.sparse.issparse(b) for b in boundaries[:, 0])
        assert all(b.shape == segmentation.shape for b in boundaries[:, 0])
        present = sorted(gtcls[0]["CategoriesPresent"][0].ravel().tolist())
        assert present == sorted(set(np.unique(segmentation).tolist()) - {0})
        for cls in present:  # every present class has a boundary, the others none
            assert boundaries[cls - 1, 0].nnz > 0


def test_voc_labels_are_palette_pngs_with_255_borders(extracted):
    for path in sorted(extracted.voc_labels.glob("*.png"))[:10]:
        with Image.open(path) as image:
            assert image.mode == "P"
            assert image.getpalette()[:6] == [0, 0, 0, 128, 0, 0]  # VOC colour map
            label = np.asarray(image)
        values = set(np.unique(label).tolist())
        assert 255 in values and values - {255} <= set(range(21))


def test_real_quirks_are_present(extracted):
    voc_train, voc_val = set(read_ids(extracted.voc_train)), set(read_ids(extracted.voc_val))
    sbd_train, sbd_val = set(read_ids(extracted.sbd_train)), set(read_ids(extracted.sbd_val))
    assert sbd_train & voc_val, "SBD train must overlap VOC val"
    assert sbd_train & voc_train and sbd_val & voc_train, "SBD lists must overlap VOC train"
    assert voc_train - sbd_train - sbd_val, "some VOC train ids are in no SBD list"
    sizes = {Image.open(p).size for p in extracted.images.glob("*.jpg")}
    assert len(sizes) > 10, "images must come in different sizes"


def test_classes_are_separable_by_colour(extracted):
    """A nearest-mean colour classifier fitted on train beats chance by far on val."""
    from scipy.ndimage import uniform_filter

    def pixels(ids):
        for i in ids:
            image = np.asarray(Image.open(extracted.images / f"{i}.jpg"), np.float32)
            image = uniform_filter(image, size=(7, 7, 1))  # average out the stripe texture
            label = np.asarray(Image.open(extracted.voc_labels / f"{i}.png"))
            keep = label != 255
            yield image[keep], label[keep]

    sums, counts = np.zeros((21, 3)), np.zeros(21)
    for rgb, label in pixels(read_ids(extracted.voc_train)):
        np.add.at(sums, label, rgb)
        np.add.at(counts, label, 1)
    assert (counts > 0).all(), "every class appears in VOC train"
    means = sums / counts[:, None]
    confusion = np.zeros((21, 21))
    for rgb, label in pixels(read_ids(extracted.voc_val)):
        predicted = np.argmin(((rgb[:, None, :] - means[None]) ** 2).sum(-1), axis=1)
        np.add.at(confusion, (label, predicted), 1)
    present = confusion.sum(1) > 0
    iou = np.diag(confusion) / (confusion.sum(0) + confusion.sum(1) - np.diag(confusion))
    assert np.nanmean(iou[present]) > 0.5  # chance is about 1/21


def test_mat_header_is_fixed(extracted):
    raw = next(iter(sorted(extracted.sbd_cls.glob("*.mat")))).read_bytes()
    assert raw[:116].startswith(b"MATLAB 5.0 MAT-file")
    assert raw[126:128] == b"IM"
    assert scipy.io.loadmat(io.BytesIO(raw))["GTcls"].shape == (1, 1)
