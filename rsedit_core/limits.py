"""The pixel limit that guards every image and raster read (decompression bombs, runaway memory).

Its own module, importing nothing heavy, so :mod:`rsedit_core.raster` (imported by the CLI parser)
can apply it without importing torch through :mod:`rsedit_core.images`, which re-exports it.
"""

from __future__ import annotations

import numbers
import os

from .errors import InputError

#: The environment variable that sets the pixel limit (an integer; ``0`` = no limit).
MAX_PIXELS_ENV = "RSEDIT_MAX_IMAGE_PIXELS"
#: The built-in pixel limit, 40,000 x 40,000. PIL's own default (~89 Mpx) is below a single
#: Sentinel-2 tile (10,980 px square, 121 Mpx) or a WorldView strip, so it would refuse real scenes;
#: 1.6 Gpx admits every single-scene product we know of while still refusing the typical bomb (a
#: few-KB PNG that claims e.g. 100,000 px square). Memory is the real bound near this size: the
#: float tensor alone takes 12 bytes a pixel (19 GB at the limit).
DEFAULT_MAX_PIXELS = 40_000 * 40_000


def max_image_pixels(max_pixels: int | None = None) -> int:
    """The pixel limit :func:`~rsedit_core.images.load_image` and the raster readers apply; ``0`` means none.

    ``max_pixels`` wins when given; otherwise :data:`MAX_PIXELS_ENV` (``RSEDIT_MAX_IMAGE_PIXELS``,
    an integer, ``0`` = no limit; unset or empty = the default); otherwise :data:`DEFAULT_MAX_PIXELS`.
    """
    if max_pixels is not None:
        # numpy's integer types register as numbers.Integral, so they pass without importing numpy.
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral) or max_pixels < 0:
            raise InputError(f"max_pixels must be a whole number of pixels >= 0 (0 = no limit); got {max_pixels!r}.")
        return int(max_pixels)
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise InputError(
            f"The environment variable {MAX_PIXELS_ENV}={raw!r} is not a whole number of pixels >= 0. "
            f"Set it to e.g. {MAX_PIXELS_ENV}=2000000000 (0 = no limit), or unset it for the default "
            f"of {DEFAULT_MAX_PIXELS:,}."
        )
    return value
