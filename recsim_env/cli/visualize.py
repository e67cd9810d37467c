"""``recsim visualize``: watch simulated sessions in a window, record them, or replay a saved trajectory.

::

    recsim visualize --model DIR --data DIR --policy random|popular|greedy|oracle|PATH [--steps N]
                     [--record session.gif] [--save-trajectory session.jsonl] [--no-window]
    recsim visualize --replay TRAJECTORY_FILE [--record session.gif] [--no-window]

Keys in the window: space pause, right arrow step, up/down speed, n next user, q quit.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from user_models.errors import InputError
from user_models.outputs import OutputKind

WORLD_ENV_ID = "RecSim-World-v0"
"""The synthetic ground-truth world: its users come from the dataset, so it needs no --model."""
POLICY_HELP = "random, popular, greedy, oracle (baselines from the agents package) or a saved agent directory"




def _is_recording(path: Path) -> bool:
    """A GIF or PNG by its signature, or an MP4 by its ``ftyp`` box at byte 4."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return False
    return head.startswith((b"GIF87a", b"GIF89a", b"\x89PNG")) or head[4:8] == b"ftyp"


RECORDING = OutputKind("recording", directory=False, suffixes=(".gif", ".mp4", ".png"), check=_is_recording)
"""``--record``: a GIF/PNG/MP4 written earlier (recognised by its suffix and file signature)."""
TRAJECTORY = OutputKind("trajectory", directory=False, suffixes=(".jsonl", ".jsonl.gz"))
"""``--save-trajectory``: a ``.jsonl``/``.jsonl.gz`` trajectory file (recognised by name)."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="watch, record or replay simulated sessions (pygame)",
        description="Show simulated sessions in a window (keys: space pause, right step, up/down speed, "
        "n next user, q quit), record them as GIF/MP4, or replay a saved trajectory without a model.",
    )
    source = parser.add_argument_group("what to show (either --model and --data, or --replay)")
    source.add_argument("--model", type=Path, help=f"user-model checkpoint directory (not with --env-id "
                        f"{WORLD_ENV_ID})")
    source.add_argument("--data", type=Path, help="dataset directory the model was trained on")
    source.add_argument("--replay", type=Path, metavar="TRAJECTORY_FILE",
                        help="a saved trajectory (.jsonl or .jsonl.gz) to replay; needs no model")
    live = parser.add_argument_group("live sessions")
    live.add_argument("--policy", default="random", help=POLICY_HELP + " (default: random)")
    live.add_argument("--greedy-model", type=Path, metavar="DIR",
                      help="saved Greedy recommender for --policy greedy (trained from the logs and saved "
                      "there when missing; training takes minutes)")
    live.add_argument("--env-id", default="RecSim-v0", help="registered env id (default: RecSim-v0)")
    live.add_argument("--slate-size", type=int, default=5, help="items per slate (default: 5)")
    live.add_argument("--max-steps", type=int, default=100, help="steps before an episode is truncated")
    live.add_argument("--calibration", type=Path, help="calibration JSON from `recsim env calibrate`")
    live.add_argument("--seed", type=int, default=0, help="seed of the users and the policy (default: 0)")
    live.add_argument("--device", default="cpu", help="torch device of the simulation (default: cpu)")
    live.add_argument("--save-trajectory", type=Path, metavar="FILE",
                      help="also save the frames as a trajectory file for --replay")
    out = parser.add_argument_group("output")
    out.add_argument("--steps", type=int, default=50,
                     help="frames to show in all (new users start as sessions end; default: 50)")
    out.add_argument("--record", type=Path, metavar="FILE", help="write the frames to a .gif (or .mp4 "
                     "when moviepy is installed)")
    out.add_argument("--fps", type=float, default=None, help="frames per second (default: the env's "
                     "metadata['render_fps'], 4)")
    out.add_argument("--no-window", action="store_true", help="do not open a window (headless recording)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing --record or "
                     "--save-trajectory file if recsim wrote it (a GIF/PNG/MP4 recording, a trajectory); "
                     "any other existing path is refused")
    parser.set_defaults(func=cmd_visualize)


def _check_args(args: argparse.Namespace) -> None:
    if args.replay is not None and (args.model is not None or args.data is not None):
        raise InputError("give either --replay or --model and --data, not both")
    if args.replay is None and (args.data is None or (args.model is None and args.env_id != WORLD_ENV_ID)):
        raise InputError(f"live sessions need --model and --data (only --data with --env-id {WORLD_ENV_ID}), "
                         "or replay a file with --replay")
    if args.steps < 1:
        raise InputError(f"--steps must be at least 1, got {args.steps}")
    if args.fps is not None and args.fps <= 0:
        raise InputError(f"--fps must be positive, got {args.fps}")
    if args.no_window and args.record is None and args.save_trajectory is None:
        raise InputError("--no-window without --record or --save-trajectory would show nothing")
    from user_models.outputs import check_output

    inputs = [args.model, args.data, args.replay, args.calibration, args.greedy_model]
    if args.record is not None:
        check_output(args.record, RECORDING, overwrite=args.overwrite, inputs=inputs, flag="--record")
    if args.save_trajectory is not None:
        check_output(args.save_trajectory, TRAJECTORY, overwrite=args.overwrite, inputs=inputs,
                     flag="--save-trajectory")


def cmd_visualize(args: argparse.Namespace) -> int:
    _check_args(args)
    from recsim_env.render.player import play
    from recsim_env.render.pygame_renderer import RENDER_FPS, HumanViewer, SessionRenderer
    from recsim_env.render.recording import VideoRecorder
    from recsim_env.render.trajectory import TrajectoryWriter

    fps = args.fps or RENDER_FPS
    if args.replay is not None:
        episodes, meta, close = _replay_source(args.replay)
    else:
        episodes, meta, close = _live_source(args)
    renderer = SessionRenderer()
    recorder = VideoRecorder(args.record, fps) if args.record is not None else None
    writer = TrajectoryWriter(args.save_trajectory, meta) if args.save_trajectory is not None else None
    viewer: HumanViewer | None = None
    try:
        if not args.no_window:
            viewer = HumanViewer(fps, renderer, caption=f"recsim-env: {meta['source']}")
        result = play(episodes, max_frames=args.steps, viewer=viewer, recorder=recorder, renderer=renderer,
                      writer=writer, progress=True)
    except BaseException:
        for sink in (recorder, writer):
            if sink is not None:
                sink.abort()
        raise
    finally:
        if viewer is not None:
            viewer.close()
        close()
    print(f"{result.frames} frames, {result.episodes} user(s), total return {result.total_reward:.3f}"
          + (" (quit)" if result.quit else ""))
    if recorder is not None:
        print(f"recorded {recorder.close()}")
    if writer is not None:
        print(f"saved trajectory {writer.close()} ({writer.n_frames} frames)")
    return 0


Episodes = Iterator[Iterator[Any]]


def _replay_source(path: Path) -> tuple[Episodes, dict[str, Any], Callable[[], None]]:
    from recsim_env.render.trajectory import read_trajectory

    trajectory = read_trajectory(path)
    meta = {**trajectory.meta, "source": f"replay of {path.name}"}
    episodes = (iter(episode) for episode in trajectory.episodes())
    return episodes, meta, lambda: None


def _live_source(args: argparse.Namespace) -> tuple[Episodes, dict[str, Any], Callable[[], None]]:
    import gymnasium as gym

    import recsim_env  # noqa: F401  (registers the env ids)

    kwargs: dict[str, Any] = {"slate_size": args.slate_size, "max_steps": args.max_steps,
                              "device": args.device}
    if args.calibration is not None:
        kwargs["calibration"] = args.calibration
    if args.model is not None:
        kwargs["model"] = args.model
    try:
        env = gym.make(args.env_id, data=args.data, **kwargs)
    except gym.error.Error as exc:
        raise InputError(f"--env-id {args.env_id!r}: {exc}") from None
    act = resolve_policy(args.policy, env, data=args.data, seed=args.seed, device=args.device,
                         greedy_model=args.greedy_model)
    meta = {"source": f"{args.policy} on {(args.model or args.data).name}", "policy": args.policy,
            "model": str(args.model), "data": str(args.data), "env_id": args.env_id,
            "env_kwargs": {k: str(v) for k, v in kwargs.items()}, "seed": args.seed}
    return live_episodes(env, act, args.policy, args.seed), meta, env.close


def live_episodes(env: Any, act: Callable[[Any], Any], policy: str, seed: int) -> Episodes:
    """Endless episodes of frames from ``env`` under ``act``; each new episode resets the env."""
    episode = 0
    while True:
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        yield _episode(env, obs, act, policy, episode)
        episode += 1


def _episode(env: Any, obs: Any, act: Callable[[Any], Any], policy: str, episode: int) -> Iterator[Any]:
    while True:
        obs, _, terminated, truncated, _ = env.step(act(obs))
        yield env.unwrapped.session_frame(policy=policy, episode=episode)
        if terminated or truncated:
            return


def resolve_policy(name: str, env: Any, *, data: Path, seed: int, device: str,
                   greedy_model: Path | None = None) -> Callable[[Any], Any]:
    """The action function of the policy called ``name`` (a baseline or a saved agent) for ``env``.

    Args:
        name: ``random``, ``popular``, ``greedy``, ``oracle`` or a saved agent directory.
        env: The (single) env the policy acts in; it is stepped directly, not through a VecEnv.
        data: The dataset directory (log-based baselines fit on its training split).
        seed: Seeds the policy's randomness.
        device: Torch device of the simulation.
        greedy_model: Where the ``greedy`` baseline's recommender is saved (trained there when missing).
    """
    from agents.factory import make_policy
    from agents.policy import act
    from recsim_env.factory import load_dataset

    unwrapped = env.unwrapped
    policy = make_policy(name, env.observation_space, env.action_space, unwrapped.config.action_mode, seed,
                         dataset=load_dataset(data), scorer=unwrapped, greedy_model=greedy_model,
                         device=device)
    masks = unwrapped.action_masks

    def action(obs: Any) -> Any:
        return act(policy, obs, action_masks=masks(), deterministic=True)[0]

    return action
