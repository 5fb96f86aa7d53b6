"""What several of the workflow's scripts share.

Every rule's script lives one folder up, named after its rule; Snakemake puts
that folder on ``sys.path``, so ``from common.voc import CLASSES`` works the
same way in every per-rule conda env, in the tests and on the command line.

Modules that need torch or MMEngine (``launch``, ``hooks``, ``metric``,
``work_dir``, ``history``) are imported only by the training and evaluation
scripts; the others need at most NumPy, matplotlib and PyYAML. The workflow
imports ``mmseg_config``, ``cost``, ``code`` (content hashes of the scripts)
and ``config_files`` (strict YAML) while planning on a login node: they need
nothing but the standard library and PyYAML. ``run_lock`` (one trainer per
run) is standard library only; ``run_files`` reads the per-run files that
tables and figures use, checking each.
"""
