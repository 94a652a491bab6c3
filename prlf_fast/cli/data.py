"""``prlf-fast data``: synthesize, inspect and convert MMSA data files."""
from __future__ import annotations

import argparse
import os
import time

from prlf_fast.config import PRESETS
from prlf_fast.errors import PRLFError


def _synth(args) -> int:
    from prlf_fast.data.synthetic import FULL_SIZES, synthesize, write_pickle
    from prlf_fast.io.atomic import locked

    sizes = list(FULL_SIZES[args.preset]) if args.full_size else [500, 100, 200]
    for i, given in enumerate((args.n_train, args.n_valid, args.n_test)):
        if given is not None:
            sizes[i] = given
    start = time.perf_counter()
    directory, name = os.path.split(os.path.abspath(args.out))
    if not os.path.isdir(directory):
        raise PRLFError(f"cannot write {args.out}: directory {directory} does not exist")
    with locked(os.path.join(directory, f".{name}.lock"), args.out):
        if os.path.lexists(args.out) and not args.force:
            raise PRLFError(f"{args.out} already exists; use --force to replace it")
        data = synthesize(args.preset, *sizes, seed=args.seed, aligned=args.aligned,
                          reliability=args.reliability)
        write_pickle(data, args.out)
    print(f"wrote {args.out}: synthetic {args.preset} ({'aligned' if args.aligned else 'unaligned'}, "
          f"{args.reliability} reliability), "
          f"train/valid/test = {'/'.join(map(str, sizes))}, seed {args.seed}, "
          f"{time.perf_counter() - start:.1f} s")
    return 0


def _inspect(args) -> int:
    from prlf_fast.data.summary import describe

    print(describe(args.path, args.preset))
    return 0


def _check_convert_target(pickle_path: str, out_dir: str, force: bool) -> None:
    """Refuse, without ``force``, to convert into a directory holding anything but a cache of
    the same pickle (or what a killed conversion left)."""
    from prlf_fast.data.cache import is_conversion_file, read_meta
    from prlf_fast.data.errors import DataError

    # A killed first conversion leaves only its own files: they are no reason to refuse.
    entries = [n for n in os.listdir(out_dir) if n != ".lock" and not is_conversion_file(n)]
    if force or not entries:
        return
    try:
        source = read_meta(out_dir)["source"]
    except DataError:
        raise PRLFError(f"{out_dir} is not empty and holds no prlf_fast cache; use --force to "
                        "write the cache into it anyway, or choose another directory") from None
    if source != os.path.abspath(pickle_path):
        raise PRLFError(f"{out_dir} holds the cache of another file ({source}); use --force to "
                        "replace it, or choose another directory")


def _convert(args) -> int:
    from prlf_fast.data.cache import clean
    from prlf_fast.data.loader import convert
    from prlf_fast.io.atomic import output_dir

    start = time.perf_counter()
    if not os.path.isfile(args.pickle):
        raise PRLFError(f"{args.pickle}: no such file")
    with output_dir(args.out_dir):
        _check_convert_target(args.pickle, args.out_dir, args.force)
        clean(args.out_dir)
        nonfinite = convert(args.pickle, args.out_dir, args.preset)
    print(f"wrote cache {args.out_dir} from {args.pickle} in {time.perf_counter() - start:.1f} s; "
          f"non-finite values replaced by 0: {sum(nonfinite.values())}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("data", help="synthesize, inspect and convert MMSA data files")
    cmds = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    presets = sorted(PRESETS)

    s = cmds.add_parser("synth", help="write a synthetic MMSA pickle with a learnable signal")
    s.add_argument("--preset", choices=presets, required=True)
    s.add_argument("--out", required=True, help="output .pkl file")
    s.add_argument("--n-train", type=int, help="training samples (default 500)")
    s.add_argument("--n-valid", type=int, help="validation samples (default 100)")
    s.add_argument("--n-test", type=int, help="test samples (default 200)")
    s.add_argument("--full-size", action="store_true", help="default to the real dataset's split sizes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--aligned", action="store_true", help="word-aligned layout (no *_lengths keys)")
    s.add_argument("--force", action="store_true", help="replace an existing --out file")
    s.add_argument("--reliability", choices=("fixed", "varying"), default="fixed",
                   help="fixed: text strongest for every sample (default); varying: one reliable "
                        "modality per sample, the other two noisy (key reliable_modality)")
    s.set_defaults(func=_synth)

    i = cmds.add_parser("inspect", help="print splits, shapes, dtypes, non-finite counts, label statistics")
    i.add_argument("path", help="MMSA pickle or cache directory")
    i.add_argument("--preset", choices=presets, help="also check shapes against this preset")
    i.set_defaults(func=_inspect)

    c = cmds.add_parser("convert", help="convert a pickle to a memory-mapped cache directory",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    c.add_argument("pickle", help="MMSA pickle")
    c.add_argument("out_dir", help="cache directory to write")
    c.add_argument("--preset", choices=presets, help="also check shapes against this preset")
    c.add_argument("--force", action="store_true",
                   help="replace the cache of another pickle, or write into a non-empty directory")
    c.set_defaults(func=_convert)
