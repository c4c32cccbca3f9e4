"""Bad-input probes of llmbook.landscape (joined into tests/test_bad_input.py)."""

import torch

from llmbook import landscape


def _x():
    return torch.zeros(2, dtype=torch.float64, requires_grad=True)


def _loss(x):
    return lambda: (x**2).sum()


PROBES = [
    ("llmbook.landscape.hvp", "params", lambda t: landscape.hvp(_loss(_x()), [], [])),
    (
        "llmbook.landscape.finite_difference_hvp",
        "eps",
        lambda t: (lambda x: landscape.finite_difference_hvp(_loss(x), [x], [x], eps=-1))(_x()),
    ),
    (
        "llmbook.landscape.top_eigenvalues",
        "method",
        lambda t: (lambda x: landscape.top_eigenvalues(_loss(x), [x], method="qr"))(_x()),
    ),
]

PROBES += [
    (
        "llmbook.landscape.spectral_density",
        "iters",
        lambda t: (lambda x: landscape.spectral_density(_loss(x), [x], iters=0))(_x()),
    ),
    (
        "llmbook.landscape.gaussian_density",
        "sigma",
        lambda t: landscape.gaussian_density(
            torch.zeros(2), torch.ones(2), torch.zeros(3), sigma=0
        ),
    ),
    (
        "llmbook.landscape.filter_normalized_direction",
        "params",
        lambda t: landscape.filter_normalized_direction("weights"),
    ),
    (
        "llmbook.landscape.loss_slice",
        "directions",
        lambda t: (lambda x: landscape.loss_slice(_loss(x), [x], [], []))(_x()),
    ),
    (
        "llmbook.landscape.gd_with_sharpness",
        "lr",
        lambda t: (lambda x: landscape.gd_with_sharpness(_loss(x), [x], lr=-1, steps=1))(_x()),
    ),
    (
        "llmbook.landscape.SharpnessTrace",
        "lr",
        lambda t: landscape.SharpnessTrace(lr="fast"),
    ),
    (
        "llmbook.landscape.random_relu_features",
        "p",
        lambda t: landscape.random_relu_features(torch.zeros(2, 2), 0),
    ),
    (
        "llmbook.landscape.ridge_fit",
        "ridge",
        lambda t: landscape.ridge_fit(torch.zeros(2, 2), torch.zeros(2), -1),
    ),
    ("llmbook.landscape.occam_bound", "n", lambda t: landscape.occam_bound(0.1, 0, 1.0)),
    ("llmbook.landscape.pac_bayes_bound", "kl", lambda t: landscape.pac_bayes_bound(0.1, 10, -1.0)),
]
