"""The shared trained tiny autoencoders tell their own decoder's images from photos."""

import numpy as np
import pytest
from PIL import Image

from aedr.autoencoders import create_autoencoder
from aedr.measure.images import read_image
from aedr.measure.scorer import Scorer
from aedr.synthesis import decoder_images

MODELS = ("taesd", "taesdxl", "taesd3", "taef1", "taef2")
PHOTOS = ("kodim03.png", "kodim05.png", "kodim14.png", "kodim23.png")
SIZE = 192


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_decoder_made_images_get_lower_ratios_than_photos(
    name, tae_dir, shared_dir, tmp_path, record_property
):
    autoencoder = create_autoencoder(name, weights_dir=tae_dir)
    kodak = shared_dir / "images" / "real" / "kodak"
    photos = [read_image(kodak / p).rgb[:SIZE, :SIZE].copy() for p in PHOTOS]
    made = decoder_images(autoencoder, photos, count=4, seed=1)
    paths = {"photo": [], "decoder": []}
    for kind, images in (("photo", photos), ("decoder", made)):
        for index, image in enumerate(images):
            path = tmp_path / f"{kind}{index}.png"
            Image.fromarray(image).save(path)
            paths[kind].append(path)
    scorer = Scorer([autoencoder])
    ratios = {
        kind: np.array([scorer.score_file(p)[0].ratio for p in kind_paths])
        for kind, kind_paths in paths.items()
    }
    record_property(f"{name}_ratio_decoder", ratios["decoder"].round(3).tolist())
    record_property(f"{name}_ratio_photo", ratios["photo"].round(3).tolist())
    # AUC: the share of (decoder image, photo) pairs ordered the right way
    auc = np.mean(ratios["decoder"][:, None] < ratios["photo"][None, :])
    record_property(f"{name}_auc", float(auc))
    assert auc >= 0.75
    assert ratios["decoder"].mean() < 0.9 * ratios["photo"].mean()
