"""Our FID Inception-v3 against pytorch-fid's ``InceptionV3``, feature for feature (issue 17).

pytorch-fid needs torchvision, whose PyPI wheels do not load beside the CPU torch of the main
test environment, so CI runs this module in a venv of its own (``.ci/run``, step 6: torch
2.14.1 and torchvision 0.29.1 from PyPI, pytorch-fid) with ``TERAMIND_REQUIRE_PYTORCH_FID=1``,
which turns the skip into a failure. The public weights file cannot be downloaded here, so both
networks load **one weights file of pytorch-fid's own layout** with seeded random values
(batch-norm statistics included): this checks the layer names, the block layout, the FID
variant's pooling, the pool3 features and the layer sFID takes; the TensorFlow port's values
are the file's and do not depend on the code.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

if os.environ.get("TERAMIND_REQUIRE_PYTORCH_FID") == "1":
    import pytorch_fid.inception as pfi  # must import: this venv exists for this test
    from pytorch_fid.fid_score import calculate_frechet_distance
else:
    pfi = pytest.importorskip(
        "pytorch_fid.inception",
        reason="pytorch-fid (and a torchvision that loads) is not installed here; "
        "CI runs this module in its own venv (.ci/run, step 6)",
    )
    from pytorch_fid.fid_score import calculate_frechet_distance


def _random_fid_weights(path, seed=0):
    """pytorch-fid's FID Inception state dict with seeded, well-scaled random values."""
    # the FID blocks subclass torchvision's and keep its parameters: the layouts are one
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in net.state_dict().items():
        if name.endswith("num_batches_tracked"):
            state[name] = value
        elif value.ndim == 4:  # convolution: He scale keeps activations in range
            fan_in = value[0].numel()
            state[name] = torch.randn(value.shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif name.endswith("running_var"):
            state[name] = 0.5 + torch.rand(value.shape, generator=g)
        elif name.endswith(("running_mean", "bn.bias")):
            state[name] = 0.2 * torch.randn(value.shape, generator=g)
        elif name.endswith("bn.weight"):
            state[name] = 1.0 + 0.2 * torch.randn(value.shape, generator=g)
        else:  # the unused classifier
            state[name] = 0.01 * torch.randn(value.shape, generator=g)
    torch.save(state, path)
    return path


def _pytorch_fid_network(weights_file, monkeypatch):
    """pytorch-fid's ``InceptionV3`` (pool3 block), loading ``weights_file`` for the URL."""
    monkeypatch.setattr(
        pfi, "load_state_dict_from_url",
        lambda *a, **k: torch.load(weights_file, map_location="cpu", weights_only=True),
    )  # fmt: skip
    net = pfi.InceptionV3(
        [pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=False, normalize_input=False,
        use_fid_inception=True,
    )  # fmt: skip
    return net.eval()


def test_features_equal_pytorch_fid_on_the_same_weights_file(tmp_path, monkeypatch):
    from napari_teramind.evaluate.inception import SFID_CHANNELS, load_inception

    weights = _random_fid_weights(tmp_path / "pt_inception-random.pth")
    ours = load_inception(weights)  # also: every key of pytorch-fid's file is ours, no extras
    theirs = _pytorch_fid_network(weights, monkeypatch)
    # the sFID layer: the 1 x 1 branch of Mixed_6d (conv, batch norm, ReLU), taken by a hook
    mixed_6d = [m for m in theirs.modules() if isinstance(m, pfi.FIDInceptionC)][2]
    taken = {}
    mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: taken.update(x=o.clone()))

    x = torch.rand(6, 3, 299, 299, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        pool3, spatial = ours(x)
        (their_pool3,) = theirs(x)
    their_pool3 = their_pool3.flatten(1)
    their_spatial = taken["x"][:, :SFID_CHANNELS].flatten(1)

    assert pool3.shape == their_pool3.shape == (6, 2048)
    assert spatial.shape == their_spatial.shape == (6, 2023)
    assert float(pool3.std()) > 1e-2 and float(spatial.std()) > 1e-2  # not a dead network
    torch.testing.assert_close(pool3, their_pool3, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(spatial, their_spatial, rtol=1e-4, atol=1e-5)
    # a different image gives different features (the comparison is not of constants)
    assert float((pool3[0] - pool3[1]).abs().max()) > 1e-3


def test_frechet_distance_equals_pytorch_fid():
    """The distance of one pair of statistics is pytorch-fid's (scipy ``sqrtm``) number.

    Covariances differ by convention: ours are population covariances (divided by n, as the
    published running sums and StyleGAN's metrics), pytorch-fid's ``np.cov`` divides by n - 1;
    both are given the same matrices here, and the convention's effect is checked apart.
    """
    from napari_teramind.evaluate.fid import RunningStats, frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 32))
    b = rng.normal(size=(300, 32)) @ rng.normal(scale=0.4, size=(32, 32)) + 0.3
    sa, sb = RunningStats(32), RunningStats(32)
    sa.add(a)
    sb.add(b)
    (mu_a, cov_a), (mu_b, cov_b) = sa.mean_cov(), sb.mean_cov()
    theirs = calculate_frechet_distance(mu_a, cov_a, mu_b, cov_b)
    assert theirs > 1.0
    assert frechet_distance(sa, sb) == pytest.approx(theirs, rel=1e-8)
    # the convention: population covariance = sample covariance * (n - 1) / n
    np.testing.assert_allclose(cov_a, np.cov(a, rowvar=False) * (399 / 400), rtol=1e-9,
                               atol=1e-12)  # fmt: skip
    sample = calculate_frechet_distance(a.mean(0), np.cov(a, rowvar=False),
                                        b.mean(0), np.cov(b, rowvar=False))  # fmt: skip
    assert abs(sample - theirs) / theirs < 0.01  # < 1 % at a few hundred samples per set
