"""Command line: ``python -m model_export [--data auto|imdb|synthetic] [--out DIR] ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_export import ExportError
from tfsload.core.quiet import import_tensorflow_quietly


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model_export",
        description="Train the IMDB sentiment transformer and export it for TF Serving.",
    )
    parser.add_argument(
        "--data",
        choices=("auto", "imdb", "synthetic"),
        default="auto",
        help="training data; auto tries IMDB, then falls back to synthetic",
    )
    parser.add_argument(
        "--imdb-npz", type=Path, help="a local keras imdb.npz instead of downloading it"
    )
    parser.add_argument(
        "--samples",
        type=int,
        help="train and validate on this many rows each (default: all 25,000)",
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("models"))
    parser.add_argument("--model-name", default="model")
    parser.add_argument("--version", type=int, default=1)
    parser.add_argument("--force", action="store_true", help="replace an existing version")
    args = parser.parse_args(argv)
    if args.imdb_npz is not None and args.data == "synthetic":
        parser.error("--imdb-npz needs --data imdb or auto")
    for flag, value in (
        ("--epochs", args.epochs),
        ("--version", args.version),
        ("--samples", args.samples if args.samples is not None else 1),
    ):
        if value < 1:
            parser.error(f"{flag} must be at least 1")
    if not args.model_name or "/" in args.model_name or args.model_name.startswith("."):
        parser.error(f"--model-name {args.model_name!r} is not a usable directory name")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from model_export import data as datasets
    from model_export.export import prepare_target, train_and_export

    try:
        # Check the destination and the data before paying for TensorFlow's import and training.
        _, staging = prepare_target(args.out, args.model_name, args.version, args.force)
        staging.rmdir()
        import_tensorflow_quietly()  # TFSLOAD_TF_LOGS=1 shows TensorFlow's start-up lines
        dataset = datasets.load(args.data, args.imdb_npz, args.seed, args.samples)
        result = train_and_export(
            dataset,
            out=args.out,
            model_name=args.model_name,
            version=args.version,
            epochs=args.epochs,
            seed=args.seed,
            force=args.force,
        )
    except ExportError as exc:
        print(f"model_export: error: {exc}", file=sys.stderr)
        return 2
    meta = result.metadata
    print(
        f"model_export: wrote {result.version_dir} "
        f"(data: {meta['data_source']}, validation accuracy {meta['validation_accuracy']:.3f}, "
        f"{meta['parameters']:,} parameters, {meta['saved_model_bytes'] / 1e6:.1f} MB); "
        f"instances: {result.instances_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
