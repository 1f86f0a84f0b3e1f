"""Analog noise and hardware-aware training of small language models (chapter 8).

The torch part of the library. Nothing outside this package imports torch or aihwkit-lightning,
and this ``__init__`` imports neither, so the torch-free modules below can be used from figures
and tests without starting torch:

* :mod:`aimoe_lib.analog.corpus` — the shipped Shakespeare corpus, its split by work and a
  character tokenizer (numpy).
* :mod:`aimoe_lib.analog.config` — frozen descriptions of the models, of training and of the
  analog periphery (numpy-free dataclasses).
* :mod:`aimoe_lib.analog.pcm` — inference-time weight noise: Gaussian noise relative to each
  row's largest ``abs(W)`` and the statistical PCM model (programming noise, drift, 1/f read
  noise, global drift compensation), in numpy with an explicit seeded generator.

The torch modules:

* :mod:`aimoe_lib.analog.models` — small decoder-only transformers, dense and mixture of experts.
* :mod:`aimoe_lib.analog.hwa` — conversion to aihwkit-lightning analog layers, the training and
  inference RPU configurations and the parts (attention, router, FFN / experts, LM head).
* :mod:`aimoe_lib.analog.train` — floating-point and hardware-aware training; the script
  ``python -m aimoe_lib.analog.train --out data/analog`` that writes ``data/analog/``.
* :mod:`aimoe_lib.analog.evaluate` — perplexity under noise, drift, router stability, per-part
  sensitivity.
* :mod:`aimoe_lib.analog.checkpoint` — small checkpoints, 8 bits per weight row.
"""
