"""Render the README's visualizer screenshot (``docs/session.png``) from a real simulated session.

Runs one policy in the env for up to ``--steps`` steps and saves the frame that best shows the weights
view (a full history whose top three events carry the most weight, none of them more than 60%), so the
screenshot is reproducible::

    recsim data synth --out out/viz-synth --users 800 --items 300 --events-per-user 60 --seed 0
    recsim user-model train --data out/viz-synth --out runs/viz-model --epochs 6 --dim 32 --layers 2 \
        --heads 2 --max-len 50 --seed 0
    python scripts/viz_screenshot.py --model runs/viz-model --data out/viz-synth --out docs/session.png

Use a synthetic dataset for committed screenshots: MovieLens titles may not be redistributed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as `python scripts/viz_screenshot.py` from a checkout
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="user-model checkpoint directory")
    parser.add_argument("--data", type=Path, required=True, help="its dataset directory")
    parser.add_argument("--policy", default="random", help="policy name (as for recsim visualize)")
    parser.add_argument("--steps", type=int, default=60, help="steps to search for a frame")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/session.png"))
    args = parser.parse_args()

    import gymnasium as gym
    import imageio.v3 as iio

    import recsim_env  # noqa: F401  (registers the env ids)
    from recsim_env.cli.visualize import live_episodes, resolve_policy
    from recsim_env.render.pygame_renderer import SessionRenderer

    env = gym.make("RecSim-v0", model=args.model, data=args.data)
    act = resolve_policy(args.policy, env, data=args.data, seed=args.seed, device="cpu")
    frames = []
    for episode in live_episodes(env, act, args.policy, args.seed):
        frames.extend(episode)
        if len(frames) >= args.steps:
            break
    shown = [f for f in frames[: args.steps] if f.attention and 0 < max(f.attention) <= 0.6
             and len(f.history) >= 8]
    if not shown:
        raise SystemExit("no step with a choice and spread weights; try more --steps or another --seed")
    best = max(shown, key=lambda f: sum(sorted(f.attention or (), reverse=True)[:3]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, SessionRenderer().rgb_array(best), optimize=True)
    print(f"{args.out}: user {best.user_id} step {best.step} ({args.out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
