"""TFDS builders for the paper's datasets and for user image folders.

Importing this package registers `matek_bm`, `matek_blood`, `acevedo`, `raabin` and
`image_folder` with TFDS.
"""

from cellssl_jax.data.builders.acevedo import Acevedo
from cellssl_jax.data.builders.image_folder import ImageFolder
from cellssl_jax.data.builders.matek_blood import MatekBlood
from cellssl_jax.data.builders.matek_bm import MatekBm
from cellssl_jax.data.builders.raabin import Raabin

__all__ = ["Acevedo", "ImageFolder", "MatekBlood", "MatekBm", "Raabin"]
