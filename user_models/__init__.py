"""Data ingestion, the synthetic world and the user models (learned and baseline) of recsim-env.

This package never imports gymnasium: the environment sees users only through
:class:`user_models.protocol.UserModel`.
"""
