"""The configs of ``lr-reproduce``: ``reproduce.yaml`` and its profiles, ``pkg://experiments.conf.reproduce``."""
