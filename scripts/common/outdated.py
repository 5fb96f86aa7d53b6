"""Out of date: what Snakemake would rebuild, said in the terms of the config.

A file is out of date when Snakemake would rebuild it by profiles/default's rerun
triggers: a param of the job that wrote it is not what it recorded (a run's
settings, the content hash of a rule's code), or an input is newer, with other
content. Decided at planning (no torch; the report's check runs before Snakemake
reads its own settings), from Snakemake's own records of each job
(.snakemake/metadata), never more often than Snakemake: no record, no verdict.

The report refuses outdated runs, tables and figures; the snapshot leaves such
runs out (rules/common.smk). Snakemake is imported where used: only the
``Outdated`` checker needs it, the text helpers are plain Python.
"""

import ast
import hashlib
import inspect
import os


def run_name(run: dict) -> str:
    return f"{run['variant']} {run['budget']}-s{run['seed']}"


def literal(text: str):
    """The value of a param as Snakemake recorded it (its repr), None if not a literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return None


def dict_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """`key old -> new` for each key of two settings dicts that differs (dotted for nested)."""
    changes = []
    for key in sorted(set(old) | set(new), key=str):
        before, after = old.get(key, "unset"), new.get(key, "unset")
        if isinstance(before, dict) and isinstance(after, dict):
            changes += dict_changes(before, after, f"{prefix}{key}.")
        elif before != after:
            changes.append(f"{prefix}{key} {before!r} -> {after!r}".replace("'unset'", "unset"))
    return changes


def param_change(rule_name: str, name: str, now: str, recorded) -> str:
    """Why param `name` of rule `rule_name` differs from its record (not `code`)."""
    new = literal(now)
    olds = [old for old in map(literal, recorded) if type(old) is type(new)]
    what = "settings" if name == "run" else f"{rule_name} param {name}"
    if isinstance(new, dict) and len(olds) == 1:
        return f"{what} changed: {', '.join(dict_changes(olds[0], new))}"
    if len(olds) == 1:
        return f"{what} changed: {olds[0]!r} -> {new!r}"
    return f"{what} changed"


def short(path: str, beside: str) -> str:
    """`path`, by its name alone when it lies beside `beside` (a file of the same run)."""
    return os.path.basename(path) if os.path.dirname(path) == os.path.dirname(beside) else path


def outdated_runs_text(outdated: dict) -> str:
    """`N run(s) ...: names`, then each reason of {run name: why} on a line of its own,
    with the runs it concerns unless it concerns them all."""
    reasons = []
    for why in outdated.values():
        reasons += [r for r in why if r not in reasons]
    lines = [
        f"{len(outdated)} run(s) made with other settings or code than this config asks for: "
        f"{', '.join(outdated)}"
    ]
    for reason in reasons:
        concerned = [name for name, why in outdated.items() if reason in why]
        which = "" if len(concerned) == len(outdated) else f": {', '.join(concerned)}"
        lines.append(f"  - {reason}{which}")
    return "\n".join(lines)


class Outdated:
    """Why Snakemake would rebuild a file or a run of ``plan``, from the records of
    ``workflow`` (Snakemake's Workflow); ``run_folder(run)`` is a run's folder."""

    def __init__(self, workflow, plan, run_folder):
        self.workflow, self.plan, self.run_folder = workflow, plan, run_folder
        self._records = None  # Snakemake's store of the jobs' records, opened once
        self._runs = {}  # run name: why it is out of date (empty: up to date)

    def _job_records(self):
        """Snakemake's store of the jobs' records, as the workflow is configured to keep it."""
        from snakemake.persistence.db import DbPersistence
        from snakemake.persistence.file import FilePersistence
        from snakemake.settings.enums import PersistenceBackend

        if self._records is None:
            settings = self.workflow.workflow_settings
            if settings.persistence_backend == PersistenceBackend.DB:
                self._records = DbPersistence(nolock=True, db_url=settings.persistence_backend_db_url)
            else:
                self._records = FilePersistence(nolock=True)
        return self._records

    @staticmethod
    def _params_now(job_rule, wildcards) -> dict:
        """{name: recorded form} of the params `job_rule` would record for `wildcards` now:
        as Snakemake records them (repr), without those derived from files or resources."""
        from snakemake.io import apply_wildcards
        from snakemake.iocontainers import Wildcards

        params = {}
        for name, value in job_rule.params._allitems():
            if callable(value):
                if len(inspect.signature(value).parameters) > 1:
                    continue  # derived (input, output, threads, resources): Snakemake records none
                value = value(Wildcards(fromdict=wildcards))
            elif isinstance(value, str):
                value = apply_wildcards(value, wildcards)
            elif isinstance(value, list):
                value = [apply_wildcards(v, wildcards) if isinstance(v, str) else v for v in value]
            if value is None or isinstance(value, (bool, int, float, str, list, tuple, dict)):
                params[name] = repr(value)
        return params

    def _param_change(self, job_rule, name, now, recorded) -> str:
        if name == "code":
            script = job_rule.basedir.join(job_rule.script).get_path_or_uri(secret_free=True)
            script = os.path.relpath(script, self.workflow.basedir)
            return f"the code of {job_rule.name} changed ({script} or a module it imports)"
        return param_change(job_rule.name, name, now, recorded)

    def _same_content(self, source, record) -> bool:
        """Whether `source` still has the content the job recorded (Snakemake's checksum)."""
        from snakemake.settings.types import DAGSettings

        recorded = (record.input_checksums or {}).get(source)
        limit = (self.workflow.dag_settings or DAGSettings()).max_checksum_file_size
        if not recorded or os.path.getsize(source) > limit:
            return False
        algorithm, _, digest = recorded.rpartition(":")
        with open(source, "rb") as f:
            return hashlib.file_digest(f, algorithm or "sha256").hexdigest() == digest

    def file(self, path: str) -> list[str]:
        """Why Snakemake would rebuild `path`, an existing output (empty: it would not)."""
        from snakemake.exceptions import UnknownRuleException
        from snakemake.io import IOFile

        record = self._job_records().metadata(IOFile(path))
        if not record or not record.rule:
            return []
        try:
            job_rule = self.workflow.get_rule(record.rule)
        except UnknownRuleException:
            return []
        reasons = []
        if record.params is not None and (record.record_format_version or 0) >= 6:
            now = self._params_now(job_rule, job_rule.get_wildcards(path))
            unmatched = set(record.params) - set(now.values())
            for name, value in now.items():
                if value not in record.params:
                    reasons.append(self._param_change(job_rule, name, value, unmatched))
        mtime = os.stat(path).st_mtime
        for source in record.input or []:
            if os.path.isfile(source) and os.stat(source).st_mtime > mtime and not self._same_content(source, record):
                reasons.append(f"{os.path.basename(path)} is older than {short(source, path)}")
        return reasons

    def run(self, run: dict) -> list[str]:
        """Why Snakemake would make run `run` again (empty: it is up to date): its config,
        model or evaluation, the init weights it starts from, or the run they come from."""
        name = run_name(run)
        if name not in self._runs:
            plan, folder = self.plan, self.run_folder(run)
            files = [f"{folder}/{n}" for n in ("config.py", "final.pth", "metrics.json")]
            if plan.config["evaluation"]["tta"] and run["variant"] in plan.study_variants:
                files.append(f"{folder}/metrics_tta.json")
            init = plan.settings[run["variant"]].get("init_from")
            if init:
                files.insert(0, init["checkpoint"])
            reasons = []
            for path in files:
                if os.path.exists(path):
                    reasons += [r for r in self.file(path) if r not in reasons]
            if init and not reasons and self.run(plan.init_sources[run["variant"]]):
                reasons.append(f"it starts from {init['run']}, which is out of date")
            self._runs[name] = reasons
        return self._runs[name]
