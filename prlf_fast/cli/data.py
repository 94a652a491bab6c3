"""``prlf-fast data``: synthesize, inspect and convert MMSA data files."""
from __future__ import annotations

import argparse
import time

from prlf_fast.config import PRESETS


def _synth(args) -> int:
    from prlf_fast.data.synthetic import FULL_SIZES, synthesize, write_pickle

    sizes = list(FULL_SIZES[args.preset]) if args.full_size else [500, 100, 200]
    for i, given in enumerate((args.n_train, args.n_valid, args.n_test)):
        if given is not None:
            sizes[i] = given
    start = time.perf_counter()
    data = synthesize(args.preset, *sizes, seed=args.seed, aligned=args.aligned, reliability=args.reliability)
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


def _convert(args) -> int:
    from prlf_fast.data.loader import convert

    start = time.perf_counter()
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
    c.set_defaults(func=_convert)
