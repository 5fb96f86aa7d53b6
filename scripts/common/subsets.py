"""Training subsets and training budgets: plain Python, used at planning time (on a
login node, no torch) and by the jobs that write the lists and render the configs.

Subsets are nested: every id of the union of a variant's training lists gets a rank,
the sha256 of ``"<subset_seed>/<id>"``, and a subset of N images is the N ids of
lowest rank.  For one seed a smaller subset is therefore contained in every larger
one (of the same lists), and an id ranks the same in every set it belongs to: a
curve over sizes shows only the effect of adding images.

A budget is ``e<N>`` (N epochs) or ``i<N>`` (at least N optimizer steps: the epoch
count that reaches them for the run's set size and total batch).
"""

import hashlib
import math
import re


class SubsetError(ValueError):
    pass


# ---- subsets -------------------------------------------------------------------------
def subset_rank(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}/{image_id}".encode()).hexdigest()


def subset_size(spec: dict, total: int, where: str) -> int:
    """Images of subset ``spec`` ({size: N} or {fraction: f}) of a set of ``total``."""
    if ("size" in spec) == ("fraction" in spec):
        raise SubsetError(f"{where}.subset: give either size or fraction, not {'both' if spec else 'neither'}")
    if "size" in spec:
        size = spec["size"]
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise SubsetError(f"{where}.subset.size: {size!r} is not a whole number > 0")
        if size > total:
            raise SubsetError(f"{where}.subset.size: {size:,} is larger than its training set ({total:,} images)")
        return size
    fraction = spec["fraction"]
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise SubsetError(f"{where}.subset.fraction: {fraction!r} is outside (0, 1]")
    size = math.floor(fraction * total + 0.5)
    if size < 1:
        raise SubsetError(f"{where}.subset.fraction: {fraction:g} of {total:,} images is no image")
    return size


def choose_subset(members: list[list[str]], size: int, seed: int) -> list[list[str]]:
    """The ``size`` lowest-ranked entries of the union of ``members`` (lists of ids), per
    member, each in its list's order.  An id listed by two members ranks once per member
    (the member's index breaks the tie)."""
    entries = [(subset_rank(seed, image_id), index, image_id) for index, ids in enumerate(members) for image_id in ids]
    if size > len(entries):
        raise SubsetError(f"a subset of {size:,} from {len(entries):,} images")
    chosen = {(index, image_id) for _, index, image_id in sorted(entries)[:size]}
    return [[i for i in ids if (index, i) in chosen] for index, ids in enumerate(members)]


def subset_name(train_sets: list[dict], spec: dict, seed: int) -> str:
    """Folder name of a subset: its lists, its size or fraction, its seed."""
    sets = "+".join(f"{s['split']}-{s['labels']}" for s in train_sets)
    amount = f"n{spec['size']}" if "size" in spec else f"f{spec['fraction']:g}"
    return f"{sets}_{amount}_s{seed}"


def member_name(train_set: dict) -> str:
    return f"{train_set['split']}-{train_set['labels']}"


# ---- label sources ---------------------------------------------------------------------
# Which annotator labelled the ids of a list, read through a label folder.  VOC's
# folder holds VOC's labels only; SegmentationClassAug holds VOC's for the ids VOC
# annotates and SBD's for the others (MMSeg's voc_aug.py); SegmentationClassSBD
# holds SBD's for every id SBD annotates.  None: the folder has no label for some ids.
_SOURCES = {
    ("train", "SegmentationClass"): ["VOC"],
    ("val", "SegmentationClass"): ["VOC"],
    ("train_sbd", "SegmentationClass"): ["VOC"],
    ("train", "SegmentationClassAug"): ["VOC"],
    ("val", "SegmentationClassAug"): ["VOC"],
    ("train_sbd", "SegmentationClassAug"): ["VOC"],
    ("aug", "SegmentationClassAug"): ["SBD"],
    ("trainaug", "SegmentationClassAug"): ["VOC", "SBD"],
    ("aug", "SegmentationClassSBD"): ["SBD"],
    ("train_sbd", "SegmentationClassSBD"): ["SBD"],
}
# the lists each (split, label folder) pair stands for, as disjoint pieces
_PIECES = {
    ("trainaug", "SegmentationClassAug"): [("train", "VOC"), ("aug", "SBD")],
}


def check_labels(train_set: dict, where: str) -> None:
    """A list read through a folder that has no label for some of its ids is an error."""
    if (train_set["split"], train_set["labels"]) not in _SOURCES:
        holds = {
            "SegmentationClass": "VOC's own labels (ids of train, val, train_sbd)",
            "SegmentationClassSBD": "SBD's labels (ids of aug, train_sbd)",
        }.get(train_set["labels"], "")
        raise SubsetError(
            f"{where}: {train_set['labels']} has no label for every id of {train_set['split']} "
            f"(it holds {holds})"
        )


def pieces(train_sets: list[dict]) -> tuple:
    """What a variant trains on, as (list, annotator) pieces: variants whose pieces are
    equal read the same images with the same labels (e.g. trainaug through
    SegmentationClassAug and train + aug)."""
    result = []
    for s in train_sets:
        key = (s["split"], s["labels"])
        result += _PIECES.get(key, [(s["split"], _SOURCES[key][0])])
    return tuple(sorted(result))


def annotation_source(train_sets: list[dict]) -> str:
    """VOC, SBD or mixed: who drew a variant's labels."""
    sources = {source for s in train_sets for source in _SOURCES[(s["split"], s["labels"])]}
    return sources.pop() if len(sources) == 1 else "mixed"


# ---- budgets ---------------------------------------------------------------------------
BUDGET = re.compile(r"^([ei])(\d+)$")


def budget_name(kind: str, amount: int) -> str:
    return f"{'e' if kind == 'epochs' else 'i'}{amount}"


def parse_budget(name: str) -> tuple[str, int]:
    """("epochs" | "iterations", N) of ``e30`` or ``i20000``."""
    match = BUDGET.match(name)
    if not match:
        raise ValueError(f"{name!r} is no budget (e<epochs> or i<iterations>)")
    return ("epochs" if match[1] == "e" else "iterations"), int(match[2])


def budget_key(name: str) -> tuple[bool, int]:
    """Table order of budgets: epoch counts first, then iteration budgets, each by size."""
    kind, amount = parse_budget(name)
    return kind != "epochs", amount


def longest_budget(names):
    """The longest of ``names``: the largest epoch count, or without one the largest
    iteration budget (epoch counts are the study's axis); None for no budgets."""
    names = list(names)
    if not names:
        return None
    return max(names, key=lambda name: (parse_budget(name)[0] == "epochs", parse_budget(name)[1]))


def table_budgets(columns, prefix: str = "change ") -> list[str]:
    """The budgets of a table's ``<prefix><budget>`` columns, in table order."""
    found = {c[len(prefix):] for c in columns if c.startswith(prefix) and BUDGET.match(c[len(prefix):])}
    return sorted(found, key=budget_key)


def describe_budget(name: str) -> str:
    kind, amount = parse_budget(name)
    return f"{amount:,} {'epochs' if kind == 'epochs' else 'iterations'}"


def iterations_per_epoch(images: int, gpus: int, batch_per_gpu: int) -> int:
    """Optimizer steps of one epoch: MMEngine's DefaultSampler gives each of the gpus
    processes ceil(images / gpus) samples, and the dataloader keeps the last short batch."""
    return math.ceil(math.ceil(images / gpus) / batch_per_gpu) if images > 0 else 0


def budget_epochs(name: str, images: int, gpus: int, batch_per_gpu: int) -> int:
    """Epochs a run of budget ``name`` trains: the epoch count itself, or the fewest
    epochs whose optimizer steps reach the iteration budget."""
    kind, amount = parse_budget(name)
    if kind == "epochs":
        return amount
    if images < 1:
        raise ValueError("an iteration budget needs a training set with images")
    return math.ceil(amount / iterations_per_epoch(images, gpus, batch_per_gpu))
