"""recsim-env: a reinforcement-learning recommendation simulator with learned Transformer users."""

__version__ = "0.1.0"
