"""Everything the portal does to image bytes: format checks, re-encoding, thumbnails."""

import io

from PIL import Image


def shrink_for_api(data: bytes, shorter_side: int) -> bytes:
    """Downscale like the official client: only when both sides exceed
    `shorter_side`, then so the shorter side equals it. Small images go as they are."""
    if not shorter_side:
        return data
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        if min(width, height) <= shorter_side:
            return data
        scale = shorter_side / min(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.convert("RGB").resize(size, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=95)
        return out.getvalue()
