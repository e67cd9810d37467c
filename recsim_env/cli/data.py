"""``recsim data``: prepare behavior logs into a dataset artifact and inspect one.

Subcommands: ``prepare`` (a log file of any supported layout, or ``--dataset ml-100k``), ``stats``.
A new subcommand that produces a :class:`~user_models.data.SequenceDataset` registers itself in
:func:`register` and finishes with :func:`save_and_report` (the synthetic world's ``synth`` does this).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsim_env.cli.data_synth import add_synth_parser
from recsim_env.cli.dataset_output import add_output_arguments, check_output, print_stats, save_and_report
from user_models.errors import InputError

DATASETS = ("ml-100k",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="prepare behavior logs and inspect prepared datasets",
                                   description="Prepare behavior logs into a dataset directory (Parquet + "
                                               "meta.json) and inspect prepared datasets.")
    sub = parser.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    _register_prepare(sub)
    _register_stats(sub)
    add_synth_parser(sub)


# --- prepare -------------------------------------------------------------------------------------------
def _register_prepare(sub: argparse._SubParsersAction) -> None:
    from user_models.data.readers import INPUT_FORMATS, TABLE_FORMATS

    p = sub.add_parser(
        "prepare", help="clean a behavior log into a dataset artifact",
        description="Read a behavior log (or a known dataset), clean it with every step counted, map ids "
                    "and behaviors, split into sessions and write the dataset directory. Column roles not "
                    "given are detected from the usual names (user/user_id, item/item_id/movieId, "
                    "timestamp/time, event/event_type, rating). See docs/data_formats.md.",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--input", type=Path, metavar="PATH", help="the interaction log (file, or directory "
                        "for recbole/movielens/mind)")
    source.add_argument("--dataset", choices=DATASETS, help="a known public dataset instead of --input")
    p.add_argument("--input-format", choices=INPUT_FORMATS, help="layout of --input; default: from the name "
                   "(.csv .tsv .parquet .jsonl .inter u.data .txt=sasrec; a directory with behaviors.tsv "
                   "is mind). mind: MIND behaviors.tsv, whose impressions become the impression table "
                   "and whose click histories and clicks become the interactions")
    p.add_argument("--data-dir", type=Path, metavar="PATH", help="with --dataset: the local copy "
                   "(RecBole atomic files or the original u.data/u.item); with --download: where to put it")
    p.add_argument("--download", action="store_true", help="with --dataset: fetch it from the official "
                   "source (checksum verified) into --data-dir or ~/.cache/recsim/<dataset>")
    cols = p.add_argument_group("column mapping (interaction log)")
    cols.add_argument("--user-col", metavar="C", help="user id column")
    cols.add_argument("--item-col", metavar="C", help="item id column")
    cols.add_argument("--time-col", metavar="C", help="timestamp column (unix s/ms or ISO-8601); optional: "
                      "without one, file order is time order")
    cols.add_argument("--event-col", metavar="C", help="event name column (view, click, ...)")
    cols.add_argument("--rating-col", metavar="C", help="rating column (mapped to behaviors by thresholds)")
    beh = p.add_argument_group("behaviors")
    beh.add_argument("--behaviors", metavar="A,B,C", help="behavior names, lowest engagement first: the "
                     "event vocabulary (e.g. view,click,cart,buy; default: events by decreasing frequency) "
                     "or the rating levels (default: dislike,neutral,like)")
    beh.add_argument("--rating-thresholds", metavar="T1,T2", default="2.5,3.5", help="ascending rating cut "
                     "points; level = number of thresholds <= rating (default 2.5,3.5: 1-2 / 3 / 4-5 stars)")
    beh.add_argument("--unknown-events", choices=("drop", "error"), default="drop",
                     help="events outside --behaviors: drop and count them, or stop (default: drop)")
    imp = p.add_argument_group("impressions (optional): what was shown, one row per shown slot")
    imp.add_argument("--impressions", type=Path, metavar="PATH", help="impression table (csv/tsv/parquet/"
                     "jsonl): user, time, impression id, item, position, clicked 0/1, and optionally the "
                     "click's behavior and the logging propensity. Stored beside the interactions; alone "
                     "(without --input) its clicked rows are the interactions")
    imp.add_argument("--impressions-format", choices=TABLE_FORMATS,
                     help="layout of --impressions; default: from the name")
    imp.add_argument("--impression-columns", metavar="ROLE=C,...", help="columns of --impressions by role: "
                     "user, time, impression, item, position, clicked, behavior, propensity (e.g. "
                     "impression=req_id,position=slot); roles not given are detected from the usual names")
    items = p.add_argument_group("item metadata (optional)")
    items.add_argument("--items", type=Path, metavar="PATH", help="item file (csv/tsv/parquet/jsonl); "
                       "recbole, movielens and mind inputs use their own .item / u.item / news.tsv when "
                       "present")
    items.add_argument("--items-format", choices=("csv", "tsv", "parquet", "jsonl"),
                       help="layout of --items; default: from the name")
    items.add_argument("--item-id-col", metavar="C", help="item id column of --items")
    items.add_argument("--title-col", metavar="C", help="title column of --items")
    items.add_argument("--category-col", metavar="C", help="category or genres column of --items "
                       "(lists are joined with '|')")
    items.add_argument("--price-col", metavar="C", help="price column of --items (numbers)")
    clean = p.add_argument_group("cleaning, sessions, privacy")
    clean.add_argument("--min-user-events", type=int, default=5, metavar="K",
                       help="k-core: users need at least K events (default 5; 1 disables)")
    clean.add_argument("--min-item-events", type=int, default=5, metavar="K",
                       help="k-core: items need at least K events (default 5; 1 disables)")
    clean.add_argument("--session-gap", default="30m", metavar="DUR", help="inactivity that starts a new "
                       "session, with unit s/m/h/d (default 30m)")
    clean.add_argument("--no-collapse-funnel", action="store_true", help="keep one row per funnel stage "
                       "(default: consecutive events on one item by one user become one interaction with "
                       "the deepest behavior; event logs only)")
    clean.add_argument("--funnel-window", metavar="DUR", help="largest gap inside one funnel, with unit "
                       "s/m/h/d or bare seconds (default: the session gap)")
    clean.add_argument("--bad-timestamps", choices=("drop", "error"), default="drop",
                       help="empty or unparsable timestamps: drop and count them, or stop (default: drop)")
    clean.add_argument("--time-unit", choices=("auto", "s", "ms", "us", "ns"), default="auto",
                       help="unit of numeric timestamps (default auto: from the magnitude)")
    clean.add_argument("--min-time", default="1990-01-01", metavar="T", help="earliest plausible event time, "
                       "ISO-8601 or unix seconds (default 1990-01-01); earlier calendar times are dropped "
                       "and counted (or stop under --bad-timestamps error)")
    clean.add_argument("--max-time", default=None, metavar="T", help="latest plausible event time (default: "
                       "tomorrow)")
    clean.add_argument("--keep-id-spaces", action="store_true", help="keep spaces around user/item ids and "
                       "event names (default: strip them, counted in the cleaning report)")
    clean.add_argument("--temporal-test-fraction", type=float, default=0.1, metavar="F",
                       help="the temporal cutoff is the (1-F) quantile of event times (default 0.1)")
    clean.add_argument("--keep-raw-ids", action="store_true",
                       help="store raw user ids (default: salted-hash pseudonyms)")
    clean.add_argument("--salt", help="key for the user pseudonyms, for stable pseudonyms across runs "
                       "(default: random per run; never stored)")
    p.add_argument("--name", help="dataset name in the metadata (default: the dataset or input file name)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_output_arguments(p)
    p.set_defaults(func=_prepare)


def _split_names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise InputError(f"--behaviors: empty name in {text!r}")
    return names


def _parse_thresholds(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(","))
    except ValueError:
        raise InputError(f"--rating-thresholds: expected comma-separated numbers, got {text!r}") from None


def _prepare(args: argparse.Namespace) -> int:
    from user_models.data.mind import mind_news, read_mind, read_news
    from user_models.data.movielens import download_ml100k, read_ml100k
    from user_models.data.prepare import PrepareConfig, parse_duration, parse_time_bound, prepare
    from user_models.data.readers import (
        ColumnMap,
        ImpressionColumnMap,
        ItemColumnMap,
        RawItems,
        RawLog,
        companion_items,
        infer_format,
        read_impressions,
        read_items,
        read_log,
    )

    inputs = [args.input, args.items, args.data_dir, args.impressions]
    if args.input is None and args.dataset is None and args.impressions is None:
        raise InputError("give --input PATH, --dataset NAME or --impressions PATH")
    check_output(args.out, args.overwrite, inputs)
    impressions: RawLog | None = None
    if args.impressions is None and (args.impressions_format is not None
                                     or args.impression_columns is not None):
        raise InputError("--impressions-format and --impression-columns go with --impressions PATH")
    log: RawLog | None
    if args.dataset is not None:
        layout_flags = ("input_format", "user_col", "item_col", "time_col", "event_col", "rating_col",
                        "items", "items_format", "item_id_col", "title_col", "category_col", "price_col",
                        "impressions")
        mapping = [f for f in layout_flags if getattr(args, f) is not None]
        if mapping:
            flag = "--" + mapping[0].replace("_", "-")
            raise InputError(f"--dataset {args.dataset} fixes the layout; drop {flag}")
        if args.download:
            data_dir = download_ml100k(args.data_dir)
        elif args.data_dir is None:
            raise InputError(f"--dataset {args.dataset} needs --data-dir PATH or --download")
        else:
            data_dir = args.data_dir
        log, item_meta_ = read_ml100k(data_dir)
        item_meta: RawItems | None = item_meta_
        name = args.name or args.dataset
    elif args.input is None:  # impressions alone: their clicks are the interactions
        log_flags = ("input_format", "user_col", "item_col", "time_col", "event_col", "rating_col",
                     "data_dir")
        given = [f for f in log_flags if getattr(args, f) is not None]
        if given or args.download:
            flag = "--" + (given[0] if given else "download").replace("_", "-")
            raise InputError(f"{flag} describes --input; with --impressions alone use --impression-columns")
        log = None
        item_columns = ItemColumnMap(args.item_id_col, args.title_col, args.category_col, args.price_col)
        item_meta = read_items(args.items, args.items_format, item_columns) if args.items else None
        name = args.name or args.impressions.stem
    else:
        if args.data_dir is not None or args.download:
            raise InputError("--data-dir and --download go with --dataset, not --input")
        fmt = args.input_format or infer_format(args.input)
        columns = ColumnMap(args.user_col, args.item_col, args.time_col, args.event_col, args.rating_col)
        item_columns = ItemColumnMap(args.item_id_col, args.title_col, args.category_col, args.price_col)
        item_fmt = args.items_format if args.items else fmt
        if fmt == "mind":
            given = [f for f in ("user_col", "item_col", "time_col", "event_col", "rating_col")
                     if getattr(args, f) is not None]
            if given:
                raise InputError(f"--input-format mind fixes the layout; drop --{given[0].replace('_', '-')}")
            if args.impressions is not None:
                raise InputError("--input-format mind reads the impressions from behaviors.tsv; drop "
                                 "--impressions")
            log, impressions = read_mind(args.input)
            item_path = args.items or mind_news(args.input)
            item_meta = None
            if item_path is not None:
                item_meta = (read_items(item_path, args.items_format, item_columns) if args.items_format
                             else read_news(item_path))
        else:
            log = read_log(args.input, fmt, columns)
            item_path = args.items or companion_items(args.input, fmt)
            item_meta = read_items(item_path, item_fmt, item_columns) if item_path is not None else None
        name = args.name or args.input.stem
    config = PrepareConfig(
        name=name,
        behaviors=_split_names(args.behaviors),
        rating_thresholds=_parse_thresholds(args.rating_thresholds),
        min_user_events=args.min_user_events,
        min_item_events=args.min_item_events,
        session_gap_seconds=parse_duration(args.session_gap),
        bad_timestamps=args.bad_timestamps,
        unknown_events=args.unknown_events,
        time_unit=args.time_unit,
        keep_raw_ids=args.keep_raw_ids,
        salt=args.salt,
        temporal_test_fraction=args.temporal_test_fraction,
        collapse_funnel=not args.no_collapse_funnel,
        funnel_window_seconds=parse_duration(args.funnel_window) if args.funnel_window is not None else None,
        min_time=parse_time_bound(args.min_time),
        max_time=parse_time_bound(args.max_time) if args.max_time is not None else None,
        strip_ids=not args.keep_id_spaces,
    )
    if args.impressions is not None:
        impressions = read_impressions(args.impressions, args.impressions_format,
                                       ImpressionColumnMap.parse(args.impression_columns))
    dataset = prepare(log, config, item_meta, progress=not args.no_progress, impressions=impressions)
    save_and_report(dataset, args.out, args.overwrite, inputs)
    return 0


# --- stats ---------------------------------------------------------------------------------------------
def _register_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stats", help="print a prepared dataset's statistics and cleaning report",
                       description="Users, items, interactions, sessions, sequence- and session-length "
                                   "distributions, behavior counts and the cleaning report of a dataset.")
    p.add_argument("dir", type=Path, metavar="DIR", help="a dataset directory written by `recsim data ...`")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    p.set_defaults(func=_stats)


def _stats(args: argparse.Namespace) -> int:
    from user_models.data.artifact import SequenceDataset
    from user_models.data.stats import dataset_stats

    stats = dataset_stats(SequenceDataset.load(args.dir))
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats, title=str(args.dir))
    return 0
