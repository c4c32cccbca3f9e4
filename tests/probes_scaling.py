"""Bad-input probes of llmbook.scaling (joined into tests/test_bad_input.py)."""

import numpy as np

from llmbook import scaling

_K, _C = scaling.KaplanLaw(), scaling.CHINCHILLA
_N = np.array([1e6, 2e6, 4e6, 8e6, 16e6])

PROBES = [
    ("llmbook.scaling.KaplanLaw", "alpha_N", lambda t: scaling.KaplanLaw(alpha_N=-1)),
    ("llmbook.scaling.KaplanLaw.loss_n", "N", lambda t: _K.loss_n(0)),
    ("llmbook.scaling.KaplanLaw.loss_d", "D", lambda t: _K.loss_d(-5)),
    ("llmbook.scaling.KaplanLaw.loss_nd", "D", lambda t: _K.loss_nd(1e9, float("nan"))),
    ("llmbook.scaling.KaplanLaw.loss_c", "C", lambda t: _K.loss_c("big")),
    ("llmbook.scaling.KaplanLaw.allocation_growth", "factor", lambda t: _K.allocation_growth(0)),
    ("llmbook.scaling.ChinchillaLaw", "alpha", lambda t: scaling.ChinchillaLaw(1, 1, 1, 0, 1)),
    ("llmbook.scaling.ChinchillaLaw.loss", "N", lambda t: _C.loss(-1, 1e9)),
    ("llmbook.scaling.ChinchillaLaw.optimal_allocation", "C", lambda t: _C.optimal_allocation(0)),
    ("llmbook.scaling.ChinchillaLaw.tokens_per_parameter", "C",
     lambda t: _C.tokens_per_parameter(-1e20)),
    ("llmbook.scaling.ChinchillaLaw.isoflop_loss", "C", lambda t: _C.isoflop_loss(0, 1e9)),
    ("llmbook.scaling.numerical_optimum", "law", lambda t: scaling.numerical_optimum("x", 1e20)),
    ("llmbook.scaling.huber_objective", "theta",
     lambda t: scaling.huber_objective(np.zeros(4), _N, _N, _N)),
    ("llmbook.scaling.ChinchillaFit", "law", lambda t: scaling.ChinchillaFit(None, 0.0, ())),
    ("llmbook.scaling.fit_chinchilla", "at least 5 runs",
     lambda t: scaling.fit_chinchilla([1e6, 2e6], [1e9, 2e9], [3.0, 2.9])),
    ("llmbook.scaling.isoflop_minimum", "distinct",
     lambda t: scaling.isoflop_minimum([1e6, 1e6, 2e6], [3.0, 2.9, 2.8])),
    ("llmbook.scaling.fit_power_law", "x", lambda t: scaling.fit_power_law([1, -2], [1, 2])),
    ("llmbook.scaling.bootstrap", "statistic", lambda t: scaling.bootstrap(None, [1.0, 2.0])),
]  # fmt: skip
