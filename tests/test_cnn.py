import numpy as np
import pytest

torch = pytest.importorskip("torch")

from emovae.cnn import MelCNN, MelInput, SequenceCNN, predict_proba, spec_augment, train_cnn  # noqa: E402


def ramps(n: int, rng: np.random.Generator, F: int = 6, T: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Clips whose class is the direction of a ramp in column 0 (same mean and spread for both classes), so
    only the order in time separates them: (N, F, T) frames and labels."""
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.2, (n, F, T)).astype(np.float32)
    ramp = np.linspace(-1.5, 1.5, T, dtype=np.float32)
    x[:, 0] += np.where(y[:, None] == 1, ramp, ramp[::-1])
    return x, y


@pytest.mark.parametrize("make, shape, norm", [
    (lambda: SequenceCNN(6, 3, channels=8), (6, 16), torch.nn.BatchNorm1d),  # (features, steps)
    (lambda: MelCNN(3), (16, 24), torch.nn.BatchNorm2d),  # (bands, steps)
])
def test_shapes_and_fused_network_matches(make, shape, norm):
    net = make()
    x = torch.randn(4, *shape)
    net.train()
    for _ in range(3):  # move the BatchNorm running statistics away from their initial values
        net(torch.randn(8, *shape) * 2 + 1)
    net.eval()
    fused = net.fused()
    assert net(x).shape == (4, 3)
    assert any(isinstance(m, norm) for m in net.modules()) and not any(isinstance(m, norm) for m in fused.modules())
    torch.testing.assert_close(fused(x), net(x), atol=1e-5, rtol=1e-5)


def test_mel_input_inverts_the_mfcc_dct_and_removes_the_level():
    from emovae.features import _dct_matrix

    rng = np.random.default_rng(0)
    log_mel = rng.normal(-40, 10, (2, 30, 12)).astype(np.float32)  # (clips, frames, bands) in dB
    mfcc = (log_mel @ _dct_matrix(12, 12)).astype(np.float32)  # all coefficients kept: the inverse is exact
    frames = np.concatenate([mfcc, rng.normal(size=(2, 30, 3)).astype(np.float32)], axis=2)  # + other columns
    layer = MelInput(12, 12)
    layer.scale.fill_(2.0)
    out = layer(torch.from_numpy(frames)).numpy()
    want = (log_mel - log_mel.mean(axis=(1, 2), keepdims=True)) / 2
    np.testing.assert_allclose(out, want.transpose(0, 2, 1), atol=1e-3)
    louder = np.concatenate([mfcc + _dct_matrix(12, 12).sum(0) * 6, frames[..., 12:]], 2).astype(np.float32)
    louder = layer(torch.from_numpy(louder))
    np.testing.assert_allclose(louder.numpy(), out, atol=1e-3)  # +6 dB in every band changes nothing


def test_spec_augment_masks_spans_with_zero():
    x = torch.ones(64, 10, 20)
    out = spec_augment(x, torch.Generator().manual_seed(0), n_masks=2, max_width=4)
    zeros = (out == 0).float()
    assert 0 < zeros.mean() < 0.5 and torch.all((out == 0) | (out == 1))
    assert torch.all(x == 1)  # the input is left alone


def test_learns_the_order_in_time_and_chooses_an_epoch():
    rng = np.random.default_rng(0)
    x, y = ramps(96, rng)
    xv, yv = ramps(48, rng)
    copies = np.stack([x, x + rng.normal(0, 0.05, x.shape).astype(np.float32)])
    copies[1, :10] = np.nan  # missing copies are never drawn
    model, val_ua = train_cnn(copies, y, 2, val=(xv, yv), epochs=20, channels=8, batch_size=16)
    assert len(val_ua) == 20 and max(val_ua) > 0.9
    assert (predict_proba(model, xv).argmax(1) == yv).mean() == pytest.approx(max(val_ua), abs=0.05)
    short, none = train_cnn(copies, y, 2, epochs=12, stop_after=2, channels=8, batch_size=16)
    assert none == [] and np.isfinite(predict_proba(short, xv)).all()


def test_seeded_training_is_reproducible():
    rng = np.random.default_rng(1)
    x, y = ramps(32, rng)
    a, _ = train_cnn(x[None], y, 2, epochs=2, channels=4, seed=3)
    b, _ = train_cnn(x[None], y, 2, epochs=2, channels=4, seed=3)
    np.testing.assert_array_equal(predict_proba(a, x), predict_proba(b, x))
