"""``fg3dgs zoo``: list, pull and export identities of the model zoo.

ExportInfo keeps export's defaults beside torch (pipeline.export), so the table types them."""

from __future__ import annotations

import argparse

from ..zoo import find, load_zoo, pull
from .parser import Command


def _zoo_options(p: argparse.ArgumentParser) -> None:
    zsub = p.add_subparsers(dest="zoo_cmd", required=True)
    zl = zsub.add_parser("list", help="identities in checkpoints/zoo.json ($FG3DGS_ZOO)")
    zl.add_argument("-v", "--verbose", action="store_true", help="also the descriptions")
    zp = zsub.add_parser("pull", help="download an identity into the Hugging Face cache")
    zp.add_argument("id")
    ze = zsub.add_parser("export", help="a Hub-ready folder (model card, weights, preview)")
    ze.add_argument("run", help="trained run folder")
    ze.add_argument("--out", required=True, help="the folder to write (a Hub repository's "
                    "contents)")
    ze.add_argument("--data", default=None, help="the dataset it was trained on (needed "
                    "when the run has no replay track)")
    ze.add_argument("--id", default=None, help="zoo id (default: the --out folder's name)")
    ze.add_argument("--title", default=None, help="the model card's title (default: the id)")
    ze.add_argument("--description", default="A talking-head identity trained with fg3dgs.",
                    help="one line for the model card and the zoo listing")
    ze.add_argument("--license", default="other",
                    help="the Hub's licence id, e.g. cc-by-4.0 (it must allow what the source "
                         "video allows; default 'other', and the card says none was stated)")
    ze.add_argument("--notes", default=None, help="a markdown file appended to the model "
                    "card (how the identity was made)")
    ze.add_argument("--float32", action="store_true", help="keep float32 weights "
                    "(default float16)")
    ze.add_argument("--force", action="store_true", help="replace an existing --out (its "
                    "contents are removed)")


def run_zoo(args: argparse.Namespace) -> int:
    """the model zoo: list, pull, export identities"""
    if args.zoo_cmd == "list":
        for e in load_zoo():
            variants = f"; {' + '.join(e.variants)}" if e.variants else ""
            print(f"{e.id:24s} {e.title} [{e.audio_features}{variants}; {e.license}] "
                  f"<- {e.describe_source()}")
            if args.verbose:
                print(f"{'':24s} {e.description}")
    elif args.zoo_cmd == "pull":
        folder = pull(find(args.id), quiet=False)
        print(f"{args.id}: {folder}")
    else:
        _export(args)
    return 0


def _export(args: argparse.Namespace) -> None:
    # torch comes with the identity's weights
    from ..pipeline.export import ExportInfo, export_identity

    name = args.id or args.out.rstrip("/").split("/")[-1]
    notes = open(args.notes).read() if args.notes else ""
    info = ExportInfo(name, args.title or name, args.description, args.license, notes)
    entry = export_identity(args.run, args.out, info, args.data, half=not args.float32,
                            force=args.force)
    print(f"wrote {args.out}: model card README.md, identity, replay track, "
          f"preview; zoo_entry.json lists {len(entry['source']['files'])} files "
          "with their sha256")


COMMANDS = (Command("zoo", run_zoo, _zoo_options, reports=(ValueError,)),)
