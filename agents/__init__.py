"""Recommendation policies: classic baselines and Stable-Baselines3 agents behind one batched protocol."""
