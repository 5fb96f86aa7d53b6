"""Target predict: each variant's longest run on a folder of the user's own pictures."""

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import DEMO_VOC, OUT, planned_jobs, run_snakemake

from predict_images import (
    PredictError,
    list_images,
    output_names,
    planned_folder,
    planned_output,
    read_picture,
)

DEMO = ("--configfile", "config/demo.yaml")


def images_config(folder) -> tuple[str, str]:
    # Snakemake's --config takes no dotted keys: the section is given as YAML
    return ("--config", f"predict={{images: {folder}}}")


def outputs_of(study, folder) -> tuple[Path, Path]:
    """The output folder and the log of ``folder``'s predictions."""
    out = planned_output(str(folder), OUT)
    return study / out, study / f"logs/predict/{OUT}/{Path(out).name}.log"


def voc_pictures(study, count: int) -> list[Path]:
    return sorted((study / DEMO_VOC / "JPEGImages").glob("*.jpg"))[:count]


def write_png16(path, samples) -> None:
    """A PNG of 16-bit samples (H x W grey, or H x W x 2/3/4: grey-alpha, RGB, RGBA), as
    scanners and microscopes write them; Pillow writes 16-bit PNGs in grey only."""
    samples = np.asarray(samples, dtype=">u2")
    colour_type = {2: 0, 3: {2: 4, 3: 2, 4: 6}.get(samples.shape[-1])}[samples.ndim]
    height, width = samples.shape[:2]
    rows = b"".join(b"\x00" + row.tobytes() for row in samples)  # filter 0 on every row

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)


def test_predict_draws_one_overlay_per_picture_and_a_panel(study, tmp_path):
    folder = tmp_path / "holiday"
    folder.mkdir()
    sources = sorted((study / DEMO_VOC / "JPEGImages").glob("*.jpg"))[:3]
    Image.open(sources[0]).save(folder / "beach.jpg")
    Image.open(sources[1]).convert("RGBA").save(folder / "dog.png")
    Image.open(sources[2]).rotate(90, expand=True).save(folder / "tower.JPEG")
    (folder / "notes.txt").write_text("not a picture\n")

    result = run_snakemake(study, "predict", "--cores", "2", *DEMO, *images_config(folder))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out, log_path = outputs_of(study, folder)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "beach.png", "dog.png", "panel.png", "tower.png"
    ]  # fmt: skip
    rows = {}
    for name in ("beach", "dog", "tower", "panel"):
        with Image.open(out / f"{name}.png") as image:
            assert image.format == "PNG"
            assert len(np.unique(np.asarray(image.convert("L")))) > 10, f"{name}.png is blank"
            rows[name] = image.size
    # picture | voc | vocaug side by side; the panel stacks the three
    assert all(width > height for width, height in (rows["beach"], rows["dog"]))
    assert rows["panel"][1] > max(rows["beach"][1], rows["tower"][1])
    assert not list((study / OUT / "predict").glob(".holiday*")), "a temporary folder was left"
    log = log_path.read_text()
    assert "skipped notes.txt: not a JPEG or PNG image" in log
    for picture, overlay in [("beach.jpg", "beach.png"), ("dog.png", "dog.png"), ("tower.JPEG", "tower.png")]:
        assert f"{picture} -> {overlay}" in log

    # asking for every other target plans as before: predict is never part of them
    plan = run_snakemake(study, "-n", *DEMO, *images_config(folder))
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert not {"predict", "predict_images"} & set(planned_jobs(plan))


@pytest.mark.parametrize(
    "folder, expected",
    [("empty", "predict.images: no JPEG or PNG images in '{path}'"),
     ("nowhere", "predict.images: no such folder '{path}'"),
     (None, "target predict needs predict.images")],
    ids=["empty-folder", "missing-folder", "unset"],
)  # fmt: skip
def test_predict_without_pictures_fails_at_planning_naming_the_folder(study, tmp_path, folder, expected):
    path = tmp_path / (folder or "unused")
    if folder == "empty":
        path.mkdir()
    options = images_config(path) if folder else ()
    result = run_snakemake(study, "predict", "--cores", "1", *DEMO, *options)
    assert result.returncode != 0
    assert expected.format(path=path) in result.stdout + result.stderr, (result.stdout + result.stderr)[-3000:]
    assert not list((study / OUT / "predict").glob(f"{path.name}*"))


def test_pictures_are_listed_by_name_and_their_overlays_never_collide(tmp_path):
    for name in ["b.png", "a.jpg", "a.PNG", "panel.jpeg", ".hidden.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    images, skipped = list_images(tmp_path)
    assert [p.name for p in images] == ["a.PNG", "a.jpg", "b.png", "panel.jpeg"]
    assert skipped == [".hidden.jpg: hidden", "notes.txt: not a JPEG or PNG image", "sub.jpg: not a file"]
    assert list(output_names(images).values()) == ["a.PNG.png", "a.jpg.png", "b.png", "panel.jpeg.png"]
    assert Path(tmp_path / "b.png") in output_names(images)


def test_predict_skips_a_picture_it_cannot_read_or_predict_and_writes_the_others(study, tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    good, grey = voc_pictures(study, 2)
    Image.open(good).save(folder / "good.jpg")
    write_png16(folder / "grey16.png", np.asarray(Image.open(grey).convert("L"), dtype=np.uint16) * 257)
    Image.fromarray(np.full((2, 4000, 3), 120, np.uint8)).save(folder / "thin.png")  # OpenCV cannot resize it
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")

    result = run_snakemake(study, "predict", "--cores", "2", *DEMO, *images_config(folder))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out, log_path = outputs_of(study, folder)
    written = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert written == ["good.png", "grey16.png", "panel.png"]
    log = log_path.read_text()
    assert "skipped thin.png: 4000x2 pixels, prediction failed (cv2.error: " in log
    assert "skipped broken.png: not a readable image (PIL.UnidentifiedImageError: " in log
    assert "grey16.png: 16-bit greyscale, scaled to 8 bits (65535 -> 255)" in log
    assert "2 of 4 pictures skipped (reasons above): broken.png, thin.png" in log
    for picture in ("good.jpg -> good.png", "grey16.png -> grey16.png"):
        assert picture in log


def test_predict_fails_listing_every_picture_when_none_can_be_predicted(study, tmp_path):
    folder = tmp_path / "unusable"
    folder.mkdir()
    Image.fromarray(np.full((4000, 2, 3), 120, np.uint8)).save(folder / "tall.png")
    (folder / "broken.jpg").write_bytes(b"not a JPEG")

    result = run_snakemake(study, "predict", "--cores", "2", *DEMO, *images_config(folder))
    assert result.returncode != 0
    out, log_path = outputs_of(study, folder)
    log = log_path.read_text()
    assert (
        f"predict.images: none of the 2 JPEG/PNG pictures in '{folder}' could be read or predicted:\n"
        "  broken.jpg: not a readable image (PIL.UnidentifiedImageError: "
    ) in log, log[-3000:]
    assert "  tall.png: 2x4000 pixels, prediction failed (cv2.error: " in log
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*")), "a temporary folder was left"


def test_same_named_folders_keep_their_own_predictions(study, tmp_path):
    beach, dog = voc_pictures(study, 2)
    for owner, picture in (("a", beach), ("b", dog)):
        folder = tmp_path / owner / "pics"
        folder.mkdir(parents=True)
        Image.open(picture).save(folder / f"{owner}.jpg")
        result = run_snakemake(study, "predict", "--cores", "2", *DEMO, *images_config(folder))
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # b/pics ran second: a/pics's predictions are still there, in a folder of their own
    contents = {}
    for owner in ("a", "b"):
        out, log_path = outputs_of(study, tmp_path / owner / "pics")
        contents[owner] = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        assert f"1 pictures of {tmp_path / owner / 'pics'} -> {out.relative_to(study)}" in log_path.read_text()
    assert contents == {"a": ["a.png", "panel.png"], "b": ["b.png", "panel.png"]}
    assert sorted(p.name.split("-")[0] for p in (study / OUT / "predict").glob("pics*")) == ["pics", "pics"]


def test_output_folder_is_named_after_the_folder_and_its_path(tmp_path, monkeypatch):
    for owner in ("a", "b"):
        (tmp_path / owner / "pics").mkdir(parents=True)
        (tmp_path / owner / "pics/x.jpg").write_bytes(b"")
    a, b = (planned_output(str(tmp_path / owner / "pics"), "results") for owner in ("a", "b"))
    assert a != b
    assert all(re.fullmatch(r"results/predict/pics-[0-9a-f]{8}", out) for out in (a, b))
    # the same folder however it is written: relative, a trailing slash, through a link
    monkeypatch.chdir(tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert {planned_output(spelling, "results") for spelling in ("a/pics/", "./a/pics", "link/pics")} == {a}
    assert planned_folder("a/pics", "results", Path(a).name) == "a/pics"
    with pytest.raises(PredictError, match=f"{b}: predict.images is 'a/pics', whose pictures go to {a}"):
        planned_folder("a/pics", "results", Path(b).name)


@pytest.mark.parametrize("channels", [1, 2, 3, 4], ids=["grey", "grey-alpha", "rgb", "rgba"])
def test_16_bit_pngs_are_scaled_by_their_bit_depth_not_clipped(tmp_path, channels):
    ramp = np.linspace(0, 65535, 48 * 64).round().astype(np.uint16).reshape(48, 64)
    samples = ramp if channels == 1 else np.stack([ramp] * channels, axis=-1)
    if channels in (2, 4):
        samples[..., -1] = 65535  # opaque
    write_png16(tmp_path / "scan.png", samples)
    assert (tmp_path / "scan.png").read_bytes()[24] == 16  # IHDR's bit depth

    rgb = read_picture(tmp_path / "scan.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    assert rgb[0, 0].tolist() == [0, 0, 0] and rgb[-1, -1].tolist() == [255, 255, 255]
    assert np.abs(rgb - ramp[..., None] / 257).max() <= 1  # 65535 -> 255, not clipped at 255
    assert (rgb == 255).mean() < 0.01
