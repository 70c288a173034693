"""The ``hf-mae`` command.

    hf-mae pretrain MODEL [--flag value ...]   pretrain one architecture (every TrainingArguments flag works)
    hf-mae pretrain MODEL --help               that job's flags

Sub-commands and pretraining jobs are looked up lazily by import path, so ``hf-mae --help`` stays fast and
an optional dependency of one job never breaks another.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence

# MODEL name -> "module:function"; the function takes the remaining argv and returns an exit code.
PRETRAIN_JOBS: dict[str, str] = {
    "chemomae": "hf_mae.training.pretrain_spectra:pretrain_chemomae",
    "wavemae": "hf_mae.training.pretrain_spectra:pretrain_wavemae",
    "protein-mae-v2": "hf_mae.training.pretrain_protein:pretrain_protein_mae_v2",
    "protein-mae-v5": "hf_mae.training.pretrain_protein:pretrain_protein_mae_v5",
    "spectral-gpt": "hf_mae.training.pretrain_spectral_gpt:pretrain_spectral_gpt",
    "smiles-bert": "hf_mae.training.pretrain_smiles:pretrain_smiles_bert",
}

# Top-level sub-commands other than ``pretrain``: name -> ("module:function", one-line help).
COMMANDS: dict[str, tuple[str, str]] = {
    "finetune-protein-interaction": ("hf_mae.training.finetune_protein_interaction:finetune_interaction",
                                     "fine-tune the protein pair classifier (V5 or V2 + adapter), report ROC-AUC"),
    "finetune": ("hf_mae.training.finetune:main",
                 "finetune ARCH --model RUN --data FILE --target COL: fine-tune on your labels, next to the baseline"),
    "plot": ("hf_mae.analysis.plot_cli:main", "PNGs of a run: loss curve, reconstructions, cosine UMAP of the latents"),
    "hub": ("hf_mae.hub.server:main", "hub serve --port P --root DIR: a local Hub-compatible server"),
    "push": ("hf_mae.hub.push:main", "push OUTPUT_DIR namespace/name: publish a training run with its model card"),
    "benchmark": ("hf_mae._benchmark_moved:main", "speed vs peer packages: see benchmarks/benchmark.py in a checkout"),
}


def _load(target: str) -> Callable[[Sequence[str]], int | None]:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)


def _usage() -> str:
    lines = ["usage: hf-mae COMMAND [ARGS]", "", "commands:",
             f"  pretrain MODEL   pretrain a model; MODEL is one of: {', '.join(sorted(PRETRAIN_JOBS))}"]
    lines += [f"  {name:<16} {help_text}" for name, (_, help_text) in sorted(COMMANDS.items())]
    lines.append("\n`hf-mae COMMAND --help` lists a command's flags.")
    return "\n".join(lines)


def _run(target: str, argv: list[str]) -> int:
    """Run a job; a user error (``ValueError``, ``OSError``: a bad value, a missing folder, refused pickles) prints
    one line and exits 1, unless ``--debug`` (a bare flag; ``--debug VALUE`` stays TrainingArguments') asks for
    the traceback."""
    bare = [i for i, arg in enumerate(argv) if arg == "--debug" and (i + 1 == len(argv) or argv[i + 1].startswith("-"))]
    argv = [arg for i, arg in enumerate(argv) if i not in bare]
    try:
        return int(_load(target)(argv) or 0)
    except (ValueError, OSError) as err:
        if bare:
            raise
        message = " ".join(str(err).split())
        print(f"hf-mae: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "pretrain":
        if not rest or rest[0] in ("-h", "--help"):
            print(f"usage: hf-mae pretrain MODEL [flags]\nMODEL is one of: {', '.join(sorted(PRETRAIN_JOBS))}")
            return 0 if rest else 2
        if rest[0] not in PRETRAIN_JOBS:
            print(f"hf-mae pretrain: unknown MODEL {rest[0]!r}; expected one of {sorted(PRETRAIN_JOBS)}", file=sys.stderr)
            return 2
        return _run(PRETRAIN_JOBS[rest[0]], rest[1:])
    if command in COMMANDS:
        return _run(COMMANDS[command][0], rest)
    print(f"hf-mae: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
    return 2


def close_process_group() -> None:
    """Under torchrun: every rank meets, then the process group is torn down here, so that a finished run exits 0
    instead of aborting in gloo's destructor at interpreter exit. Nothing otherwise (torch is never imported
    just for this)."""
    distributed = sys.modules.get("torch.distributed")
    if distributed is not None and distributed.is_available() and distributed.is_initialized():
        distributed.barrier()
        distributed.destroy_process_group()


def console() -> None:
    """The ``hf-mae`` executable: ``main``, then ``close_process_group``."""
    code = main()
    close_process_group()
    sys.exit(code)


if __name__ == "__main__":
    console()
