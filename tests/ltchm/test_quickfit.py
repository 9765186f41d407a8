import statistics

import torch

from ltchm.imageio import list_images, read_image
from ltchm.quickfit import quick_fit
from ltchm.zoo import get_model


def test_short_training_on_real_images_lowers_the_loss(ucm_dir) -> None:
    torch.manual_seed(0)
    images = [read_image(p) for p in list_images(ucm_dir)]
    assert len(images) >= 8
    model = get_model("ltchm", N=32)
    history = quick_fit(model, images, steps=60, lmbda=512, patch=64, batch=4, lr=1e-3)
    first = statistics.mean(h["loss"] for h in history[:10])
    last = statistics.mean(h["loss"] for h in history[-10:])
    assert last < 0.5 * first, (first, last)
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in history)
