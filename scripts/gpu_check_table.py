"""The GPU check's table (rule gpu_check_table): one row per measured model, GPU
count and mode, from rule measure_gpu's json files; csv for the report, markdown
for the terminal (`snakemake gpu_check`)."""

import json
from pathlib import Path

from common.jobs import markdown_table, start_log, write_csv, write_text

COLUMNS = [
    "model", "gpus", "device", "gpu", "mode", "train images/s per GPU", "vs fp32", "val images/s",
    "peak memory (GiB)", "loader wait", "all-reduce ms/step", "data", "crop x batch",
]  # fmt: skip


def percent(share) -> str | None:
    return None if share is None else f"{100 * share:.1f}%"


def rows(documents: list[dict]) -> list[dict]:
    table = []
    for document in documents:
        modes = document["modes"]
        fp32 = (modes.get("fp32") or {}).get("train_images_per_second")
        for mode, result in modes.items():
            rate = result.get("train_images_per_second")
            name = mode if not result.get("amp_dtype") else mode.replace("amp", f"amp {result['amp_dtype']}")
            peaks = [p for p in (result.get("train_peak_memory_gib"), result.get("val_peak_memory_gib")) if p is not None]
            table.append({
                "model": document["model"], "gpus": document["gpus"], "device": document["device"],
                "gpu": document["environment"].get("gpu") or "-", "mode": name,
                "train images/s per GPU": result.get("error") or f"{rate:.1f}",
                "vs fp32": f"{rate / fp32:.2f}x" if rate and fp32 else None,
                "val images/s": None if rate is None else f"{result['val_images_per_second']:.1f}",
                "peak memory (GiB)": f"{max(peaks):.1f}" if peaks else None,
                "loader wait": percent(result.get("loader_wait")),
                "all-reduce ms/step": result.get("allreduce_ms"),
                "data": document["data"],
                "crop x batch": f"{document['crop_size'][0]}x{document['crop_size'][1]} x {document['batch_per_gpu']}",
            })  # fmt: skip
    return table


def environment_lines(documents: list[dict]) -> list[str]:
    lines = []
    for document in documents:
        env = document["environment"]
        where = f"{document['device']} {env['gpu']}" if env.get("gpu") else document["device"]
        lines.append(
            f"- {document['model']}-{document['gpus']}: {where} "
            f"(driver {env.get('driver')}, CUDA {env.get('torch_cuda')}, torch {env.get('torch')}, "
            f"mmcv {env.get('mmcv')}, mmcv ops CUDA {env.get('mmcv_ops_cuda')}), host {env.get('host')}, "
            f"{document['measured_at']}, recipe of run {document['recipe']}"
        )
    return lines


def main(snakemake) -> None:
    start_log(snakemake)
    documents = []
    for path in snakemake.input:
        try:
            documents.append(json.loads(Path(path).read_text()))
        except ValueError as error:
            raise SystemExit(f"{path}: not a gpu_check result ({error}): delete it, then `snakemake gpu_check`")
    table = rows(documents)
    write_csv(Path(snakemake.output.csv), COLUMNS, table)
    text = "# GPU check\n\n" + markdown_table(COLUMNS, table) + "\n" + "\n".join(environment_lines(documents)) + "\n"
    write_text(Path(snakemake.output.md), text)


if __name__ == "__main__" and "snakemake" in globals():
    main(snakemake)  # noqa: F821
