"""``recsim user-model``: train, evaluate and inspect the Transformer user model and its baselines.

```
recsim user-model train --data DIR --out DIR [--epochs N] [--device cpu|cuda] [--seed S] [--resume]
                        [model flags]
recsim user-model eval --model DIR --data DIR [--split valid|test] [--json]
recsim user-model baselines --data DIR [--split valid|test] [--json]
recsim user-model profile --model DIR --data DIR --user ID [--top K]
recsim user-model fit-choice --model DIR --data DIR [--calibration JSON] [--holdout F] [--seed S]
                             [--plot PNG] [--json]
recsim user-model eval-choice --model DIR --data DIR [--calibration JSON] [--plot PNG] [--json]
```

``train`` also runs under ``torchrun --nproc_per_node=N -m recsim_env.cli user-model train ...``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields, replace
from typing import Any

from user_models.choice_model import CHOICE_FORMS
from user_models.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("user-model", help="train, evaluate and inspect the learned user model")
    sub = parser.add_subparsers(dest="user_model_command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train the Transformer user model on a prepared dataset")
    train.add_argument("--data", required=True, help="dataset directory (recsim data prepare/synth)")
    train.add_argument("--out", required=True, help="checkpoint directory to write (must not exist unless "
                       "--resume or --overwrite)")
    # The model flags' defaults are those of TransformerConfig / TrainConfig (tests/test_cli_help.py checks
    # that each help states the dataclass's value; the classes are not imported here: they load torch).
    train.add_argument("--epochs", type=int,
                       help="maximum epochs (early stopping may end sooner; default: 30)")
    train.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast on cuda)")
    train.add_argument("--seed", type=int, default=0, help="seed of the initialisation and the batches")
    again = train.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    again.add_argument("--overwrite", action="store_true",
                       help="replace --out if it is a user-model checkpoint (or interrupted run) written by "
                            "recsim; any other existing path is refused")
    model = train.add_argument_group("model flags (defaults: the benchmarked configuration)")
    model.add_argument("--dim", type=int, help="model width (default: 64)")
    model.add_argument("--layers", type=int, help="Transformer layers (default: 2)")
    model.add_argument("--heads", type=int, help="attention heads (default: 2)")
    model.add_argument("--max-len", type=int,
                       help="attention window in events, the KV cache's size (default: 50)")
    model.add_argument("--dropout", type=float, help="dropout (default: 0.2)")
    model.add_argument("--batch-size", type=int, help="training windows per optimizer step (default: 128)")
    model.add_argument("--lr", type=float, help="peak AdamW learning rate (default: 0.002)")
    model.add_argument("--weight-decay", type=float, help="AdamW weight decay (default: 0.1)")
    model.add_argument("--patience", type=int, help="epochs without a better validation NDCG@10 before "
                       "stopping early (default: 10)")
    model.add_argument("--label-smoothing", type=float, help="next-item label smoothing (default: 0.0)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="next-item, behavior and session-end metrics of a trained model")
    ev.add_argument("--model", required=True, help="checkpoint directory")
    ev.add_argument("--data", required=True, help="the dataset it was trained on")
    ev.add_argument("--split", choices=("valid", "test"), default="test")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    ev.add_argument("--plot", default=None, help="reliability PNG (default MODEL/reliability_SPLIT.png)")
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=_eval)

    base = sub.add_parser("baselines", help="Pop, Markov and GRU4Rec on the same split and metrics")
    base.add_argument("--data", required=True)
    base.add_argument("--split", choices=("valid", "test"), default="test")
    base.add_argument("--json", action="store_true")
    base.add_argument("--epochs", type=int, default=None, help="GRU4Rec maximum epochs")
    base.add_argument("--device", default="cpu")
    base.add_argument("--seed", type=int, default=0)
    base.add_argument("--no-progress", action="store_true")
    base.set_defaults(func=_baselines)

    prof = sub.add_parser("profile", help="a user's top categories from the model's next-item distribution")
    prof.add_argument("--model", required=True)
    prof.add_argument("--data", required=True)
    prof.add_argument("--user", required=True, help="user key (users.parquet) or user index")
    prof.add_argument("--top", type=int, default=5)
    prof.set_defaults(func=_profile)
    _register_choice(sub)


def _register_choice(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser("fit-choice", help="learn the slate choice (P(each slot), P(no choice), position "
                         "effects) from the dataset's impression log and save it with the model")
    fit.add_argument("--model", required=True, help="checkpoint directory (the choice is written into it)")
    fit.add_argument("--data", required=True, help="the dataset it was trained on, with impressions")
    fit.add_argument("--calibration", default=None, help="calibration JSON of `recsim env calibrate`: the "
                     "baseline the learned choice is scored against (default: the uncalibrated choice)")
    fit.add_argument("--holdout", type=float, default=0.2,
                     help="share of users whose impressions are held out for the report")
    fit.add_argument("--seed", type=int, default=0, help="seed of the user split")
    fit.add_argument("--history-len", type=int, default=50, help="window of the repeat flag (the env's)")
    fit.add_argument("--form", choices=("auto", *CHOICE_FORMS), default="mnl",
                     help="the choice's form: mnl (default; a multinomial logit: every shown item competes), "
                     "cascade (a top-down scan that takes the first item good enough), or auto: the one with "
                     "the higher log-likelihood on fit users held out of the fit")
    fit.add_argument("--plot", default=None, help="reliability PNG of the held-out comparison (default: "
                     "none)")
    fit.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    fit.add_argument("--device", default="cpu")
    fit.set_defaults(func=_fit_choice)

    ev = sub.add_parser("eval-choice", help="held-out impression log-likelihood, click AUC and calibration "
                        "of the learned choice against the calibrated multinomial logit")
    ev.add_argument("--model", required=True, help="checkpoint directory")
    ev.add_argument("--data", required=True, help="the dataset it was trained on, with impressions")
    ev.add_argument("--calibration", default=None, help="calibration JSON of the baseline")
    ev.add_argument("--heldout-data", default=None,
                    help="another dataset of the same catalogue with impressions (e.g. another logging "
                    "policy's): score on all of its impressions instead of the held-out users")
    ev.add_argument("--plot", default=None,
                    help="reliability PNG (default MODEL/choice_reliability.png)")
    ev.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ev.add_argument("--device", default="cpu")
    ev.set_defaults(func=_eval_choice)


def _fit_choice(args: argparse.Namespace) -> int:
    from recsim_env.config import Calibration
    from recsim_env.offline.choice_eval import ChoiceFitSettings, choice_table, fit_choice
    from user_models.checkpoint import load_user_model, save_learned_choice
    from user_models.data.artifact import SequenceDataset
    from user_models.train import resolve_device

    if not 0 < args.holdout < 1:
        raise InputError(f"--holdout must be in (0, 1), got {args.holdout}")
    dataset = SequenceDataset.load(args.data)
    model = load_user_model(args.model, resolve_device(args.device), dataset)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    settings = ChoiceFitSettings(holdout=args.holdout, seed=args.seed, history_len=args.history_len,
                                 form=args.form)
    choice, scores = fit_choice(model, dataset, settings, calibration, args.plot)
    path = save_learned_choice(choice, args.model)
    if args.json:
        print(json.dumps(choice.report, indent=2))
        return 0
    report = choice.report
    print(f"learned choice ({report['form']} form) fitted on {report['fit_impressions']} impressions "
          f"(item L2 {report['item_l2']:g}); "
          f"dropped: {report['dropped']}; saved: {path}")
    print(choice_table(scores))
    return 0


def _eval_choice(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recsim_env.config import Calibration
    from recsim_env.offline.choice_eval import (
        ChoiceFitSettings,
        baseline_choice,
        choice_table,
        load_features,
        score_choice,
    )
    from user_models.checkpoint import load_user_model
    from user_models.choice_model import held_out_users
    from user_models.data.artifact import SequenceDataset
    from user_models.outputs import OutputKind, check_output
    from user_models.train import resolve_device

    plot = Path(args.plot) if args.plot else Path(args.model) / "choice_reliability.png"
    check_output(plot, OutputKind("reliability plot", directory=False, signatures=(b"\x89PNG",),
                                  suffixes=(".png",)), overwrite=True, flag="--plot")
    dataset = SequenceDataset.load(args.data)
    model = load_user_model(args.model, resolve_device(args.device), dataset)
    calibration = Calibration.load(args.calibration) if args.calibration else None
    if args.heldout_data:
        from recsim_env.offline.choice_eval import score_other_log

        result = score_other_log(model, dataset, SequenceDataset.load(args.heldout_data), calibration)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print(f"all impressions of {result['dataset']} (never fitted on); dropped: {result['dropped']}")
            print(choice_table(result))
        return 0
    learned = model.learned_choice
    split = learned.report.get("settings", {}) if learned is not None else {}
    settings = ChoiceFitSettings(**split) if split else ChoiceFitSettings()
    base = baseline_choice(calibration, dataset, settings.history_len)
    features, dropped = load_features(model, dataset, (1.0, base.temperature), settings)
    held = held_out_users(dataset.n_users, settings.holdout, settings.seed)[features.user]
    scores = score_choice(learned, features.subset(held), base, plot)
    if args.json:
        print(json.dumps({"held_out": scores, "dropped": dropped, "settings": vars(settings)}, indent=2))
        return 0
    if learned is None:
        print(f"{args.model} has no learned choice (run `recsim user-model fit-choice`): the baseline only")
    print(f"held-out users' impressions ({settings.holdout:.0%} of users, seed {settings.seed}); "
          f"dropped: {dropped}")
    print(choice_table(scores))
    print(f"reliability diagram: {plot}")
    return 0


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from user_models.train import TrainConfig
    from user_models.transformer import TransformerConfig

    model_config, train_config = TransformerConfig(), TrainConfig()
    flags = {k: v for k, v in vars(args).items() if v is not None}
    try:
        model_config = replace(model_config, **{f.name: flags[f.name] for f in fields(model_config)
                                                if f.name in flags})
    except ValueError as exc:
        raise InputError(f"model flags: --{str(exc).replace('_', '-')}") from None
    try:
        train_config = replace(train_config, **{f.name: flags[f.name] for f in fields(train_config)
                                                if f.name in flags and f.name not in ("progress",)},
                               progress=not args.no_progress)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return model_config, train_config



def _train(args: argparse.Namespace) -> int:
    from user_models.data.artifact import SequenceDataset
    from user_models.outputs import USER_MODEL, check_output
    from user_models.train import train_user_model

    model_config, train_config = _configs(args)
    # before any work: refuse an output that is not ours, an input inside it, an unwritable path
    check_output(args.out, USER_MODEL, overwrite=args.overwrite, inputs=[args.data],
                 allow_existing=args.resume)
    dataset = SequenceDataset.load(args.data)
    model, result = train_user_model(dataset, args.out, model_config, train_config, resume=args.resume,
                                     overwrite=args.overwrite)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        print(f"trained {model.n_parameters():,} parameters in {result.seconds:.1f} s "
              f"({result.epochs_run} epochs, best epoch {result.best_epoch}); "
              f"valid NDCG@10 {result.best_valid.get('ndcg@10', math.nan):.4f} "
              f"({result.best_valid.get('ranking', '')}); checkpoint: {args.out}")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _eval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from user_models.checkpoint import load_user_model
    from user_models.data.artifact import SequenceDataset
    from user_models.evaluate import (
        TransformerScorer,
        eval_examples,
        format_table,
        heads_report,
        ranking_report,
    )
    from user_models.outputs import OutputKind, check_output
    from user_models.train import resolve_device

    plot = Path(args.plot) if args.plot else Path(args.model) / f"reliability_{args.split}.png"
    # the plot replaces an earlier PNG (as it always did), never another file; checked before the work
    check_output(plot, OutputKind("reliability plot", directory=False, signatures=(b"\x89PNG",),
                                  suffixes=(".png",)), overwrite=True, flag="--plot")
    device = resolve_device(args.device)
    dataset = SequenceDataset.load(args.data)
    model = load_user_model(args.model, device, dataset)
    examples = eval_examples(dataset, args.split)
    report = {**ranking_report(TransformerScorer(model), examples, device),
              **heads_report(model, examples, device, reliability_png=plot)}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_table([report]))
    print()
    print(format_table([report], masked=True))
    b, e = report["behavior"], report["session_end"]
    print(f"\nbehavior given item ({', '.join(model.behaviors)}): accuracy {b['accuracy']:.4f} "
          f"(majority class {b['majority_accuracy']:.4f}), macro-F1 {b['macro_f1']:.4f}, "
          f"one-vs-rest AUC {b['auc_ovr']:.4f}")
    print(f"session end: AUC {e['auc']:.4f}, log-loss {e['log_loss']:.4f}, ECE {e['ece']:.4f} "
          f"(base rate {e['base_rate']:.4f}); reliability diagram: {plot}")
    return 0


def _baselines(args: argparse.Namespace) -> int:
    from user_models.baselines import baseline_reports
    from user_models.data.artifact import SequenceDataset
    from user_models.evaluate import format_table
    from user_models.train import TrainConfig

    train_config = TrainConfig(seed=args.seed, device=args.device, progress=not args.no_progress)
    if args.epochs is not None:
        if args.epochs < 1:
            raise InputError(f"--epochs must be at least 1, got {args.epochs}")
        train_config = replace(train_config, epochs=args.epochs)
    dataset = SequenceDataset.load(args.data)
    reports = baseline_reports(dataset, args.split, train_config=train_config)
    if args.json:
        print(json.dumps({r["model"]: r for r in reports}, indent=2))
        return 0
    print(format_table(reports))
    print()
    print(format_table(reports, masked=True))
    return 0


def _profile(args: argparse.Namespace) -> int:
    import numpy as np

    from user_models.checkpoint import load_user_model
    from user_models.data.artifact import SequenceDataset
    from user_models.profile import InterestProfiler
    from user_models.sequences import history_from_sequences, take_users

    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}")
    dataset = SequenceDataset.load(args.data)
    model = load_user_model(args.model, "cpu", dataset)
    keys = dataset.users["user_key"].to_list()
    if args.user in keys:
        user = keys.index(args.user)
    elif args.user.isdigit() and int(args.user) < dataset.n_users:
        user = int(args.user)
    else:
        raise InputError(f"--user {args.user!r}: no such user key or index (0..{dataset.n_users - 1})")
    history = history_from_sequences(take_users(dataset.sequences, np.array([user])))
    profiler = InterestProfiler(model, dataset.items)
    print(f"user {user} ({keys[user]}), {int(history.lengths[0])} events; next-item interest by category:")
    for name, p in profiler.profile(history, args.top)[0]:
        print(f"  {name:<24} {p:.3f}")
    return 0
