"""The Hydra configs of the experiments, installed as the package ``experiments.conf``.

Edit the YAML files here. Hydra reads them through its search path as ``pkg://experiments.conf``
(``lr-train``) and ``pkg://experiments.conf.reproduce`` (``lr-reproduce``), so they work from a wheel
as well as from an editable install; see ``[tool.setuptools]`` in ``pyproject.toml``.
"""
