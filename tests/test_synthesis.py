import numpy as np
from conftest import smooth_image
from PIL import Image

from aedr.synthesis import decoder_images, photo_crops, save_images


def test_decoder_images_are_8_bit_and_deterministic(random_tiny, tmp_path):
    photos = [smooth_image(i, (64, 64)) for i in range(3)]
    made = decoder_images(random_tiny, photos, 5, seed=3, reconstructions=2)
    assert len(made) == 5 and all(m.shape == (64, 64, 3) and m.dtype.name == "uint8" for m in made)
    again = decoder_images(random_tiny, photos, 5, seed=3, reconstructions=2)
    assert all((a == b).all() for a, b in zip(made, again, strict=True))
    paths = save_images(made, tmp_path / "out", "x-")
    assert [p.name for p in paths][:2] == ["x-000.png", "x-001.png"]
    assert (np.asarray(Image.open(paths[0]).convert("RGB")) == made[0]).all()  # lossless


def test_photo_crops_skip_small_and_unreadable_files(tmp_path):
    Image.fromarray(smooth_image(0, (80, 90))).save(tmp_path / "big.png")
    Image.fromarray(smooth_image(1, (40, 40))).save(tmp_path / "small.png")
    (tmp_path / "broken.png").write_bytes(b"nope")
    crops = photo_crops([tmp_path], size=64)
    assert len(crops) == 1 and crops[0].shape == (64, 64, 3)
