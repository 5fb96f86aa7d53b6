"""Target predict: each variant's longest run on a folder of the user's own pictures."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import DEMO_VOC, OUT, planned_jobs, run_snakemake

from predict_images import list_images, output_names

DEMO = ("--configfile", "config/demo.yaml")


def images_config(folder) -> tuple[str, str]:
    # Snakemake's --config takes no dotted keys: the section is given as YAML
    return ("--config", f"predict={{images: {folder}}}")


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
    out = study / OUT / "predict/holiday"
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
    log = (study / f"logs/predict/{OUT}/holiday.log").read_text()
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
    assert not (study / OUT / "predict" / path.name).exists()


def test_pictures_are_listed_by_name_and_their_overlays_never_collide(tmp_path):
    for name in ["b.png", "a.jpg", "a.PNG", "panel.jpeg", ".hidden.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.jpg").mkdir()
    images, skipped = list_images(tmp_path)
    assert [p.name for p in images] == ["a.PNG", "a.jpg", "b.png", "panel.jpeg"]
    assert skipped == [".hidden.jpg: hidden", "notes.txt: not a JPEG or PNG image", "sub.jpg: not a file"]
    assert list(output_names(images).values()) == ["a.PNG.png", "a.jpg.png", "b.png", "panel.jpeg.png"]
    assert Path(tmp_path / "b.png") in output_names(images)
